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

import sys

from repro_core.config import RunConfig, load_config, package_preset_dirs
from repro_core.train import build_arg_parser
from repro_core.train import main as core_main

from repro_maskmoe.frequency import training_token_counts_file
from repro_maskmoe.modeling import MaskMoEModelConfig

PROG = "repro-maskmoe-train"


def run_tokenizer(cfg: RunConfig):
    """The tokenizer the Trainer will use for ``cfg`` (trained and cached on first use)."""
    from repro_core.config import resolve_base
    from repro_core.data import get_tokenizer, resolve_corpus

    if cfg.model.init_from:
        return get_tokenizer(resolve_base(cfg.model.init_from))
    return get_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))


def token_counts_override(cfg: RunConfig) -> list[str]:
    """``["model.token_counts=FILE"]`` with the counts of ``cfg``'s training split, or [] when
    the config already names a file."""
    if cfg.model.token_counts:
        return []
    path = training_token_counts_file(cfg.data, run_tokenizer(cfg))
    return [f"model.token_counts={path}"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_arg_parser(PROG, "Train MaskMoE or a baseline.").parse_args(argv)
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    dirs = package_preset_dirs(__file__)
    if not args.print_config:
        cfg = load_config(args.preset, overrides, MaskMoEModelConfig, dirs)
        argv += [arg for item in token_counts_override(cfg) for arg in ("--set", item)]
    return core_main(argv, model_config_cls=MaskMoEModelConfig, preset_dirs=dirs, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
