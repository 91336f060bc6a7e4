"""``repro-maskmoe-train``: train MaskMoE or a baseline (SMoE top-1, Hash Layer) with the core
Trainer, after counting the token frequencies of the run's training split (the mask is built
from them before training; the count file is cached and named in the run's config.yaml).

One process (CPU or one GPU)::

    repro-maskmoe-train --preset tiny --seed 0
    repro-maskmoe-train --preset tiny --set model.routing=smoe
    repro-maskmoe-train --preset tiny --set model.frequency_threshold=0.05 --set model.frequent_experts=2

Several processes (DDP or DeepSpeed ZeRO through an accelerate config file)::

    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml \\
        -m repro_maskmoe.train --preset small

Resume: add ``--run-dir DIR --resume``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from repro_core.cli import check_inputs as core_check_inputs
from repro_core.cli import core_run, train_main
from repro_core.config import MissingInputError, RunConfig, package_preset_dirs

from repro_maskmoe.config import MaskMoEModelConfig

PROG = "repro-maskmoe-train"


def run_tokenizer(cfg: RunConfig):
    """The tokenizer the Trainer will use for ``cfg`` (trained and cached on first use)."""
    from repro_core.config import resolve_base
    from repro_core.data import get_tokenizer, resolve_corpus

    if cfg.model.init_from:
        return get_tokenizer(resolve_base(cfg.model.init_from))
    return get_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))


def with_token_counts(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``model.token_counts`` naming the counts of its training split (counted once
    and cached), unless the config already names a file."""
    if cfg.model.token_counts:
        return cfg
    from repro_maskmoe.frequency import training_token_counts_file

    path = training_token_counts_file(cfg.data, run_tokenizer(cfg))
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, token_counts=str(path)))


def check_inputs(cfg: RunConfig) -> None:
    """Before torch: the corpus and base checkpoint (core), and a given ``model.token_counts``."""
    core_check_inputs(cfg)
    counts = cfg.model.token_counts
    if counts and not Path(counts).expanduser().is_file():
        raise MissingInputError(
            f"model.token_counts={counts!r}: no such file (leave it unset and the trainer counts "
            "the training split)"
        )


def run(cfg: RunConfig, run_dir, resume: bool = False, overwrite: bool = False) -> dict:
    """Count the training split's tokens (the mask needs them; saved in the run's config.yaml),
    then train with the core trainer."""
    return core_run(with_token_counts(cfg), run_dir, resume=resume, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    """Checks the config (no torch), then counts the tokens and trains."""
    return train_main(
        argv,
        model_config_cls=MaskMoEModelConfig,
        preset_dirs=package_preset_dirs(__file__),
        prog=PROG,
        run=run,
        validate=check_inputs,
        description="Train MaskMoE or a baseline.",
    )


if __name__ == "__main__":
    sys.exit(main())
