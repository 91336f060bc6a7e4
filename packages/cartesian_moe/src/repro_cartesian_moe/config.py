"""``model`` section of a CartesianMoE run (torch-free: the command lines validate it first)."""

from __future__ import annotations

from dataclasses import dataclass

from repro_core.config import SHARED_MIXES, ModelConfig, check, resolve_base

# Table 1 variants; "cartesian_no_shared" is the Table 3 ablation (not parameter-matched).
# "hash_share" is Table 1's Hash Layer as the official code builds it (spec §1.7: a per-token-id
# score table replaces the router logits, top-2, + shared expert).
# layers.py and modeling.py validate against the same tuples.
VARIANTS = (
    "smoe_share",
    "smoe_top3",
    "fine_grained",
    "cartesian",
    "cartesian_no_shared",
    "smoe_topp",
    "hash_share",
)
MODEL_VARIANTS = ("dense", *VARIANTS)
# hash_share's token table: "fixed" (a buffer, never updated; the default: a Hash Layer routes
# by a fixed function of the token id) or "trained" (a parameter). The official code's table is
# an nn.Embedding; whether it was frozen is not visible there (spec §1.7, [I]).
HASH_TABLES = ("fixed", "trained")


@dataclass
class CartesianMoEModelConfig(ModelConfig):
    """:class:`~repro_core.config.ModelConfig` plus the switches of
    :class:`~repro_cartesian_moe.modeling.CartesianMoEConfig`.

    ``intermediate_size`` is W, the width of the dense layers and of one full expert unit.
    ``init_from`` continues from a checkpoint directory: this package's ``final/`` (loaded as
    is, with the switches of this section), or a dense HF Llama / DecoderLM one (see
    :func:`~repro_cartesian_moe.modeling.load_dense_checkpoint`: embeddings, attention, norms
    and the dense layers' MLPs are copied; the MoE layers start from their initialisation and
    that layer's dense MLP weights are dropped). The shape fields of this section are then taken
    from the checkpoint.

    ``hash_table`` / ``hash_table_seed`` (variant ``hash_share`` only): whether its per-token-id
    score table is "fixed" (default) or "trained" (unverified, spec §1.7), and the seed of its
    N(0, initializer_range²) draw (one table, the same in every MoE layer, as the official
    code's single model-level table).
    """

    variant: str = "cartesian"
    num_experts: int = 8
    moe_layer_interval: int = 2
    shared_mix: str = "coef"
    load_balancing_coef: float = 0.01
    z_loss_coef: float = 0.0
    hash_table: str = "fixed"
    hash_table_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.variant in MODEL_VARIANTS,
            "model.variant",
            self.variant,
            f"one of {list(MODEL_VARIANTS)}",
        )
        check(self.num_experts >= 1, "model.num_experts", self.num_experts, "an integer >= 1")
        check(
            self.moe_layer_interval >= 1,
            "model.moe_layer_interval",
            self.moe_layer_interval,
            "an integer >= 1 (2 = every other layer)",
        )
        check(
            self.shared_mix in SHARED_MIXES,
            "model.shared_mix",
            self.shared_mix,
            f"one of {list(SHARED_MIXES)}",
        )
        check(
            self.load_balancing_coef >= 0,
            "model.load_balancing_coef",
            self.load_balancing_coef,
            ">= 0",
        )
        check(self.z_loss_coef >= 0, "model.z_loss_coef", self.z_loss_coef, ">= 0")
        check(
            self.hash_table in HASH_TABLES,
            "model.hash_table",
            self.hash_table,
            f"one of {list(HASH_TABLES)} (hash_share's per-token-id score table)",
        )
        w, n = self.intermediate_size, self.num_experts
        check(w % 2 == 0, "model.intermediate_size", w, "an even integer (half-width experts)")
        if self.variant == "smoe_top3":
            check(
                w * (n + 1) % n == 0,
                "model.intermediate_size",
                w,
                f"a multiple of model.num_experts={n} for smoe_top3 (experts of width W(N+1)/N)",
            )

    def moe_kwargs(self) -> dict:
        return dict(
            moe_variant=self.variant,
            num_experts=self.num_experts,
            moe_layer_interval=self.moe_layer_interval,
            shared_mix=self.shared_mix,
            load_balancing_coef=self.load_balancing_coef,
            z_loss_coef=self.z_loss_coef,
            hash_table=self.hash_table,
            hash_table_seed=self.hash_table_seed,
        )

    def build(self, vocab_size: int, max_position_embeddings: int):
        """A fresh :class:`~repro_cartesian_moe.modeling.CartesianMoEForCausalLM`, or one loaded
        from ``init_from`` (imports torch)."""
        from .modeling import (
            CartesianMoEConfig,
            CartesianMoEForCausalLM,
            is_cartesian_moe_checkpoint,
            load_dense_checkpoint,
            load_llama_checkpoint,
        )

        if self.init_from:
            path = resolve_base(self.init_from)
            if is_cartesian_moe_checkpoint(path):
                return load_llama_checkpoint(path, CartesianMoEForCausalLM, **self.moe_kwargs())
            return load_dense_checkpoint(path, **self.moe_kwargs())
        kwargs = self.decoder_kwargs(vocab_size, max_position_embeddings) | self.moe_kwargs()
        return CartesianMoEForCausalLM(CartesianMoEConfig(**kwargs))


__all__ = ["HASH_TABLES", "MODEL_VARIANTS", "VARIANTS", "CartesianMoEModelConfig"]
