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

from repro_core.config import package_preset_dirs
from repro_core.train import main as core_main

from .config import DSMoEModelConfig


def main(argv: list[str] | None = None) -> int:
    return core_main(
        argv,
        model_config_cls=DSMoEModelConfig,
        preset_dirs=package_preset_dirs(__file__),
        prog="repro-dsmoe-train",
    )


if __name__ == "__main__":
    sys.exit(main())
