"""``model`` section of a Finedeep run: the dense baseline or Finedeep with its switches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from repro_core.config import ConfigError, ModelConfig, check

# the allowed switch values (modeling.py validates FinedeepConfig against the same tuples)
ROUTER_INPUTS = ("expert_output", "sublayer_input")
ROUTER_ACTS = ("sigmoid", "softmax", "none")
ROUTER_NORMS = ("none", "sum_to_one", "sum_to_k")
NORM_PLACEMENTS = ("pre", "post")
# NSAR thresholds (nsar.py): the paper's 0.1, and the sweep of the evaluation
DEFAULT_THRESHOLD = 0.1
THRESHOLDS = (0.01, 0.05, 0.1)


@dataclass
class FinedeepModelConfig(ModelConfig):
    """:class:`~repro_core.config.ModelConfig` plus ``variant`` and the Finedeep switches.

    ``variant: dense`` builds the core's dense decoder (the baseline); ``finedeep`` replaces
    each FFN by ``num_sublayers`` x ``experts_per_sublayer`` experts of width
    ``intermediate_size / (M K)``. Switches and defaults: see
    :class:`repro_finedeep.modeling.FinedeepConfig`.
    """

    variant: Literal["dense", "finedeep"] = "finedeep"
    num_sublayers: int = 2
    experts_per_sublayer: int = 4
    router_input: str = "expert_output"
    router_act: str = "sigmoid"
    router_norm: str = "none"
    norm_placement: str = "pre"
    residual_per_sublayer: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.variant in ("dense", "finedeep"), "model.variant", self.variant, "dense | finedeep"
        )
        for key in ("num_sublayers", "experts_per_sublayer"):
            value = getattr(self, key)
            check(isinstance(value, int) and value > 0, f"model.{key}", value, "a positive integer")
        mk = self.num_sublayers * self.experts_per_sublayer
        if self.variant == "finedeep" and self.intermediate_size % mk:
            raise ConfigError(
                f"model.intermediate_size={self.intermediate_size} is invalid: allowed a multiple of "
                f"model.num_sublayers * model.experts_per_sublayer = {mk}"
            )
        for key, allowed in (
            ("router_input", ROUTER_INPUTS),
            ("router_act", ROUTER_ACTS),
            ("router_norm", ROUTER_NORMS),
            ("norm_placement", NORM_PLACEMENTS),
        ):
            value = getattr(self, key)
            check(value in allowed, f"model.{key}", value, " | ".join(allowed))
        if self.init_from and self.variant == "finedeep":
            raise ConfigError(
                "model.init_from is only supported with model.variant=dense: Finedeep is trained "
                "from scratch (load a trained Finedeep model with from_pretrained instead)"
            )

    def finedeep_kwargs(self) -> dict:
        return dict(
            num_sublayers=self.num_sublayers,
            experts_per_sublayer=self.experts_per_sublayer,
            router_input=self.router_input,
            router_act=self.router_act,
            router_norm=self.router_norm,
            norm_placement=self.norm_placement,
            residual_per_sublayer=self.residual_per_sublayer,
        )

    def build(self, vocab_size: int, max_position_embeddings: int):
        """The dense core decoder (``variant: dense``) or :class:`FinedeepForCausalLM`."""
        if self.variant == "dense":
            return super().build(vocab_size, max_position_embeddings)
        from .modeling import FinedeepConfig, FinedeepForCausalLM

        kwargs = self.decoder_kwargs(vocab_size, max_position_embeddings) | self.finedeep_kwargs()
        return FinedeepForCausalLM(FinedeepConfig(**kwargs))


__all__ = ["FinedeepModelConfig"]
