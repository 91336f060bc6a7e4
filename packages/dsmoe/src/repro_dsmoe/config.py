"""``model`` section of a DSMoE run: which arm, the DSMoE switches and the baselines' settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from repro_core.config import ModelConfig, check, resolve_base

VARIANTS = ("dense", "dsmoe", "topk", "prune")
# DSMoEConfig switches (modeling.py validates against the same tuples)
GATE_MODES = ("ste", "hard", "soft")
SPARSITY_TARGETS = ("G", "S")
ROUTER_INITS = ("random", "zeros")


@dataclass
class DSMoEModelConfig(ModelConfig):
    """:class:`~repro_core.config.ModelConfig` plus the DSMoE switches (see ``DSMoEConfig``).

    ``variant``: ``dense`` = the dense model continued (upper bound); ``dsmoe`` = the paper's
    conversion (and its ablations through ``gate_mode`` / ``sparsity_coef``); ``topk`` =
    LLaMA-MoE-style softmax top-``top_k`` over the same blocks; ``prune`` = static neuron prune
    keeping ``prune_fraction`` of each FFN, importance measured on ``calibration_blocks`` blocks
    of ``calibration_corpus`` (training split) of length ``calibration_seq_len``.
    ``init_from``: the dense base (``$REPRO_BASE`` = ``make base``); a DSMoE checkpoint there is
    loaded as is. Without it a fresh dense model of the given shape is converted (debug only).
    """

    variant: Literal["dense", "dsmoe", "topk", "prune"] = "dsmoe"
    num_experts: int = 8
    tau: float = 0.5
    eval_tau: float | None = None
    gate_mode: str = "ste"
    renormalize: bool = True
    sparsity_coef: float = 1.0
    sparsity_on: str = "G"
    router_init: str = "random"
    top_k: int = 3
    balance_coef: float = 0.01
    prune_fraction: float = 0.375
    calibration_corpus: str = "wikitext-2"
    calibration_blocks: int = 32
    calibration_seq_len: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.variant in VARIANTS, "model.variant", self.variant, " | ".join(VARIANTS))
        check(self.num_experts >= 1, "model.num_experts", self.num_experts, "an integer >= 1")
        check(0 <= self.tau < 1, "model.tau", self.tau, "0 <= tau < 1")
        if self.eval_tau is not None:
            check(0 <= self.eval_tau < 1, "model.eval_tau", self.eval_tau, "0 <= tau < 1 or null")
        check(
            self.gate_mode in GATE_MODES, "model.gate_mode", self.gate_mode, " | ".join(GATE_MODES)
        )
        check(
            self.sparsity_on in SPARSITY_TARGETS,
            "model.sparsity_on",
            self.sparsity_on,
            " | ".join(SPARSITY_TARGETS),
        )
        check(
            self.router_init in ROUTER_INITS,
            "model.router_init",
            self.router_init,
            " | ".join(ROUTER_INITS),
        )
        check(self.sparsity_coef >= 0, "model.sparsity_coef", self.sparsity_coef, ">= 0")
        check(
            1 <= self.top_k <= self.num_experts,
            "model.top_k",
            self.top_k,
            f"1..model.num_experts={self.num_experts}",
        )
        check(self.balance_coef >= 0, "model.balance_coef", self.balance_coef, ">= 0")
        check(0 < self.prune_fraction <= 1, "model.prune_fraction", self.prune_fraction, "(0, 1]")
        check(
            self.calibration_blocks >= 1,
            "model.calibration_blocks",
            self.calibration_blocks,
            ">= 1",
        )
        check(
            self.calibration_seq_len >= 2,
            "model.calibration_seq_len",
            self.calibration_seq_len,
            ">= 2",
        )

    def dsmoe_switches(self) -> dict:
        """:class:`~repro_dsmoe.modeling.DSMoEConfig` fields of this arm."""
        return dict(
            num_experts=self.num_experts,
            routing=self.variant,
            tau=self.tau,
            eval_tau=self.eval_tau,
            gate_mode=self.gate_mode,
            renormalize=self.renormalize,
            sparsity_coef=self.sparsity_coef,
            sparsity_on=self.sparsity_on,
            router_init=self.router_init,
            top_k_experts=self.top_k,
            balance_coef=self.balance_coef,
            prune_fraction=self.prune_fraction,
        )

    def build(self, vocab_size: int, max_position_embeddings: int):
        """The arm's model: the dense base, or its conversion (prune: mask calibrated here)."""
        from repro_core.modeling import DecoderConfig, DecoderLM, load_llama_checkpoint

        from .convert import convert_checkpoint, convert_model
        from .modeling import DSMoEForCausalLM

        if self.init_from:
            path = resolve_base(self.init_from)
            if is_dsmoe_checkpoint(path):
                return DSMoEForCausalLM.from_pretrained(path).train()
            if self.variant == "dense":
                return load_llama_checkpoint(path).train()
            model = convert_checkpoint(path, **self.dsmoe_switches())
        else:
            dense = DecoderLM(
                DecoderConfig(**self.decoder_kwargs(vocab_size, max_position_embeddings))
            )
            if self.variant == "dense":
                return dense.train()
            model = convert_model(dense, **self.dsmoe_switches())
        if self.variant == "prune":
            from .baselines import calibrate_neuron_mask

            calibrate_neuron_mask(model, self.calibration_ids(vocab_size), self.prune_fraction)
        return model.train()

    def calibration_ids(self, vocab_size: int):
        """(calibration_blocks, calibration_seq_len) token ids: the training split of
        ``calibration_corpus`` with the base's tokenizer, or random ids without a base."""
        import numpy as np
        import torch

        n, length = self.calibration_blocks, self.calibration_seq_len
        if not self.init_from:
            generator = torch.Generator().manual_seed(0)
            return torch.randint(0, vocab_size, (n, length), generator=generator)
        from repro_core.data import as_blocks, get_tokenizer, resolve_corpus, tokenize_corpus

        tokenizer = get_tokenizer(resolve_base(self.init_from))
        splits = tokenize_corpus(resolve_corpus(self.calibration_corpus), tokenizer, 0.1)
        blocks = as_blocks(splits["train"].tokens, length)
        pick = np.linspace(0, len(blocks) - 1, num=min(n, len(blocks))).astype(np.int64)
        return torch.from_numpy(blocks[pick].astype(np.int64))


def is_dsmoe_checkpoint(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "dsmoe"


__all__ = [
    "GATE_MODES",
    "ROUTER_INITS",
    "SPARSITY_TARGETS",
    "VARIANTS",
    "DSMoEModelConfig",
    "is_dsmoe_checkpoint",
]
