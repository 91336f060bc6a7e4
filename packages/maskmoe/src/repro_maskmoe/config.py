"""``model`` section of a MaskMoE run (torch-free: the command lines validate it first)."""

from __future__ import annotations

from dataclasses import dataclass

from repro_core.config import SHARED_MIXES, ConfigError, ModelConfig, check, resolve_base

from .frequency import FREQUENCY_RULES

ROUTINGS = ("maskmoe", "smoe", "hash")  # modeling.MaskMoEConfig validates against the same tuple


@dataclass
class MaskMoEModelConfig(ModelConfig):
    """:class:`~repro_core.config.ModelConfig` plus the switches of
    :class:`~repro_maskmoe.modeling.MaskMoEConfig`.

    ``token_counts``: the ``.npz`` of training-split counts the mask is built from;
    ``repro-maskmoe-train`` (and the reproduction) count the run's training split and set it.
    ``intermediate_size`` is the width of the dense layers and of each expert.
    """

    routing: str = "maskmoe"
    num_experts: int = 8
    moe_top_k: int = 1
    moe_layer_interval: int = 2
    frequent_experts: int = 4
    frequency_rule: str = "top_fraction"
    frequency_threshold: float = 0.2
    special_tokens_frequent: bool = False
    per_layer_mask: bool = False
    mask_seed: int = 0
    shared_expert_hidden_size: int = 0
    shared_mix: str = "add"
    load_balancing_coef: float = 0.01
    z_loss_coef: float = 0.0
    token_counts: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.routing in ROUTINGS, "model.routing", self.routing, f"one of {list(ROUTINGS)}")
        n = self.num_experts
        check(n >= 1, "model.num_experts", n, "an integer >= 1")
        check(
            1 <= self.moe_top_k <= n, "model.moe_top_k", self.moe_top_k, f"1..model.num_experts={n}"
        )
        check(
            1 <= self.frequent_experts <= n,
            "model.frequent_experts",
            self.frequent_experts,
            f"1..model.num_experts={n}",
        )
        check(
            self.moe_layer_interval >= 1,
            "model.moe_layer_interval",
            self.moe_layer_interval,
            "an integer >= 1 (1 = every layer, 2 = every other layer)",
        )
        check(
            self.frequency_rule in FREQUENCY_RULES,
            "model.frequency_rule",
            self.frequency_rule,
            f"one of {list(FREQUENCY_RULES)}",
        )
        if self.frequency_rule == "min_count":
            ok, allowed = (
                self.frequency_threshold >= 1,
                ">= 1 (a count) for frequency_rule=min_count",
            )
        else:
            ok, allowed = 0 <= self.frequency_threshold <= 1, f"0..1 for {self.frequency_rule}"
        check(ok, "model.frequency_threshold", self.frequency_threshold, allowed)
        check(
            self.shared_mix in SHARED_MIXES,
            "model.shared_mix",
            self.shared_mix,
            f"one of {list(SHARED_MIXES)}",
        )
        check(
            self.shared_expert_hidden_size >= 0,
            "model.shared_expert_hidden_size",
            self.shared_expert_hidden_size,
            ">= 0 (0 = no shared expert)",
        )
        for key in ("load_balancing_coef", "z_loss_coef"):
            check(getattr(self, key) >= 0, f"model.{key}", getattr(self, key), ">= 0")

    def moe_kwargs(self) -> dict:
        keys = (
            "routing num_experts moe_top_k moe_layer_interval frequent_experts frequency_rule "
            "frequency_threshold special_tokens_frequent per_layer_mask mask_seed "
            "shared_expert_hidden_size shared_mix load_balancing_coef z_loss_coef"
        ).split()
        return {k: getattr(self, k) for k in keys}

    def build(self, vocab_size: int, max_position_embeddings: int):
        """A :class:`~repro_maskmoe.modeling.MaskMoEForCausalLM` (imports torch), its mask built
        from ``token_counts``."""
        from repro_core.modeling import load_llama_checkpoint

        from .frequency import load_token_counts
        from .modeling import MaskMoEConfig, MaskMoEForCausalLM

        if self.routing == "maskmoe" and not self.token_counts:
            raise ConfigError(
                "model.token_counts is not set: MaskMoE builds its mask from the training split's "
                "token counts; train with repro-maskmoe-train (it counts them) or pass "
                "--set model.token_counts=FILE.npz"
            )
        if self.init_from:
            model = load_llama_checkpoint(
                resolve_base(self.init_from), MaskMoEForCausalLM, **self.moe_kwargs()
            )
        else:
            kwargs = self.decoder_kwargs(vocab_size, max_position_embeddings) | self.moe_kwargs()
            model = MaskMoEForCausalLM(MaskMoEConfig(**kwargs))
        if self.token_counts:
            counts, special = load_token_counts(self.token_counts)
            model.set_token_counts(counts, special)
        return model


__all__ = ["ROUTINGS", "MaskMoEModelConfig"]
