"""``model`` section of a UniAttn run: which arm, the grouping, the W_c init and the stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from repro_core.config import ModelConfig, check, resolve_base

VARIANTS = ("base", "uniattn", "softmax", "cla")
# W_c initialisations (convert.fit_compensation validates against the same tuple)
INIT_METHODS = ("lsq_tokens", "lsq_official", "zero")
# how stage 1 counts against ``train.max_steps`` (see UniAttnModelConfig.stage_steps)
STAGE1_BUDGETS = ("extra", "split")


@dataclass
class UniAttnModelConfig(ModelConfig):
    """:class:`~repro_core.config.ModelConfig` plus the UniAttn switches.

    ``variant``: ``base`` = the unchanged decoder (standard fine-tuning); ``uniattn`` =
    softmax unification + W_c; ``softmax`` = unification without W_c (ablation); ``cla`` =
    cross-layer KV sharing on the same superblocks (baseline).
    ``group_size`` / ``start`` / ``end``: superblock rule (official ``grouping_idx``,
    ``grouping_begin_idx``, ``grouping_end_idx``).
    ``compensation_init``: ``lsq_tokens`` (all-token ridge, default) | ``lsq_official``
    (position-wise means + pinv, as the official code) | ``zero``; fitted on
    ``calibration_blocks`` blocks of ``data.seq_len`` tokens of the training corpus, with relative
    ridge ``ridge``. ``stage1_steps`` > 0: first train only W_c for that many steps (stage 1),
    then everything for ``train.max_steps`` (stage 2, fresh optimizer), as the paper's
    two-stage post-training; ``stage1_train_lm_head`` also trains the head in stage 1 (an
    official-code quirk, off by default). ``stage1_budget``: ``extra`` (official: stage 2 runs
    the full ``train.max_steps``, so a two-stage arm takes ``stage1_steps`` more optimizer steps
    than a one-stage one) | ``split`` (stage 2 runs ``train.max_steps - stage1_steps``: every
    arm takes ``train.max_steps`` steps in all, a budget matched to full fine-tuning; spec §4.2
    arm B); see :meth:`stage_steps`. Stage 1 exists only where there is a W_c
    (``variant: uniattn``): the other variants have nothing to train in it and skip it, so one
    preset (``tiny`` sets ``stage1_steps: 100``) serves every arm (see :attr:`runs_stage1`).
    """

    variant: Literal["base", "uniattn", "softmax", "cla"] = "uniattn"
    group_size: int = 2
    start: int = 2
    end: int = 4
    compensation_init: str = "lsq_tokens"
    ridge: float = 1e-3
    calibration_blocks: int = 32
    stage1_steps: int = 0
    stage1_train_lm_head: bool = False
    stage1_budget: str = "extra"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.variant in VARIANTS, "model.variant", self.variant, " | ".join(VARIANTS))
        check(self.group_size >= 1, "model.group_size", self.group_size, "an integer >= 1")
        check(self.start >= 0, "model.start", self.start, "a layer index >= 0")
        check(self.end > self.start, "model.end", self.end, f"> model.start={self.start}")
        check(
            self.compensation_init in INIT_METHODS,
            "model.compensation_init",
            self.compensation_init,
            " | ".join(INIT_METHODS),
        )
        check(self.ridge >= 0, "model.ridge", self.ridge, ">= 0")
        check(
            self.calibration_blocks >= 1,
            "model.calibration_blocks",
            self.calibration_blocks,
            ">= 1",
        )
        check(
            self.stage1_steps >= 0, "model.stage1_steps", self.stage1_steps, ">= 0 (0 = one stage)"
        )
        check(
            self.stage1_budget in STAGE1_BUDGETS,
            "model.stage1_budget",
            self.stage1_budget,
            " | ".join(STAGE1_BUDGETS),
        )

    @property
    def runs_stage1(self) -> bool:
        """Whether the W_c-only stage 1 runs: ``stage1_steps`` > 0 and the variant has a W_c."""
        return self.stage1_steps > 0 and self.variant == "uniattn"

    def stage_steps(self, max_steps: int) -> tuple[int, int]:
        """(stage-1 steps, stage-2 steps) of this arm when ``train.max_steps`` is ``max_steps``;
        their sum is the arm's optimizer-step budget. Raises ConfigError when ``split`` leaves
        stage 2 no step."""
        if not self.runs_stage1:
            return 0, max_steps
        if self.stage1_budget == "extra":
            return self.stage1_steps, max_steps
        check(
            self.stage1_steps < max_steps,
            "model.stage1_steps",
            self.stage1_steps,
            f"< train.max_steps={max_steps} with model.stage1_budget=split (stage 2 runs the "
            "difference); lower model.stage1_steps or use model.stage1_budget=extra",
        )
        return self.stage1_steps, max_steps - self.stage1_steps

    def stage2_train(self, train):
        """The ``train`` section of stage 2 (the whole run for one-stage variants): the same
        schedule over the steps :meth:`stage_steps` gives it, warmup capped by them."""
        import dataclasses

        steps = self.stage_steps(train.max_steps)[1]
        if steps == train.max_steps:
            return train
        return dataclasses.replace(
            train, max_steps=steps, warmup_steps=min(train.warmup_steps, steps)
        )

    def uniattn_kwargs(self) -> dict:
        return dict(
            group_size=self.group_size,
            start=self.start,
            end=self.end,
            sharing="kv" if self.variant == "cla" else "softmax",
            compensation=self.variant == "uniattn",
        )

    def build(self, vocab_size: int, max_position_embeddings: int):
        """The model of this arm: fresh, converted from ``init_from`` (W_c = 0; the train entry
        point fits it), or loaded as is when ``init_from`` already holds a UniAttn model."""
        from repro_core.modeling import DecoderConfig, DecoderLM, load_llama_checkpoint

        from .convert import convert_checkpoint, convert_state_dict
        from .modeling import UniAttnForCausalLM

        if self.init_from:
            path = resolve_base(self.init_from)
            if is_uniattn_checkpoint(path):
                return UniAttnForCausalLM.from_pretrained(path)
            if self.variant == "base":
                return load_llama_checkpoint(path)
            return convert_checkpoint(path, **self.uniattn_kwargs()).train()
        config = DecoderConfig(**self.decoder_kwargs(vocab_size, max_position_embeddings))
        if self.variant == "base":
            return DecoderLM(config)
        base = DecoderLM(config)
        return convert_state_dict(config, base.state_dict(), **self.uniattn_kwargs()).train()


def is_uniattn_checkpoint(path: str | Path) -> bool:
    import json

    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "repro_uniattn"


__all__ = [
    "INIT_METHODS",
    "STAGE1_BUDGETS",
    "VARIANTS",
    "UniAttnModelConfig",
    "is_uniattn_checkpoint",
]
