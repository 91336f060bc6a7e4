"""``repro-temporal-scaling-law-train``: the core's dense decoder with the per-position loss log.

The temporal scaling law changes no model: it reads the validation loss of every token position at
log-spaced steps, which the core trainer writes to ``RUN/position_loss.npz`` when
``train.position_loss_points`` > 0 (every preset of this package sets 40)::

    repro-temporal-scaling-law-train --preset tiny --run-dir runs/tsl-tiny
    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml \\
        -m repro_temporal_scaling_law.train --preset small --run-dir runs/tsl-small
    repro-tsl-fit --run runs/tsl-tiny --fit-until 0.2
"""

from __future__ import annotations

import sys

from repro_core.cli import train_main
from repro_core.config import ModelConfig, package_preset_dirs


def main(argv: list[str] | None = None) -> int:
    return train_main(
        argv,
        model_config_cls=ModelConfig,
        preset_dirs=package_preset_dirs(__file__),
        prog="repro-temporal-scaling-law-train",
    )


if __name__ == "__main__":
    sys.exit(main())
