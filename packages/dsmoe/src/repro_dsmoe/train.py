"""``repro-dsmoe-train``: continue training a dense base as DSMoE (or one of its baselines).

    repro-dsmoe-train --preset tiny                                   # DSMoE from `make base`
    repro-dsmoe-train --preset tiny --set model.gate_mode=hard        # ablation: no STE
    repro-dsmoe-train --preset tiny --set model.gate_mode=soft        # ablation: Eq. 20
    repro-dsmoe-train --preset tiny --set model.variant=topk --set model.top_k=3
    repro-dsmoe-train --preset tiny --set model.init_from=/models/Llama-3.2-1B   # your checkpoint
    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml -m repro_dsmoe.train --preset small
    repro-dsmoe-train --preset tiny --run-dir runs/ds --resume        # continue a run

Training computes every expert (the straight-through estimator needs the outputs of inactive
experts for the router gradient, Eq. 16); only inference skips experts.
"""

from __future__ import annotations

import sys

from repro_core.cli import check_inputs as core_check_inputs
from repro_core.cli import train_main
from repro_core.config import package_preset_dirs
from repro_core.data import resolve_corpus

from .config import DSMoEModelConfig


def check_inputs(cfg) -> None:
    """Before torch: the corpus and base checkpoint (core), and the prune arm's calibration
    corpus."""
    core_check_inputs(cfg)
    if cfg.model.variant == "prune" and cfg.model.init_from:
        resolve_corpus(cfg.model.calibration_corpus)


def main(argv: list[str] | None = None) -> int:
    """Checks the config (no torch), then trains with the core trainer."""
    return train_main(
        argv,
        model_config_cls=DSMoEModelConfig,
        preset_dirs=package_preset_dirs(__file__),
        prog="repro-dsmoe-train",
        validate=check_inputs,
    )


if __name__ == "__main__":
    sys.exit(main())
