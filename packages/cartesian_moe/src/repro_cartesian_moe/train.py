"""``repro-cartesian-moe-train``: train CartesianMoE or a Table 1 baseline with the core Trainer.

One process (CPU or one GPU)::

    repro-cartesian-moe-train --preset tiny --set model.variant=cartesian --seed 0
    repro-cartesian-moe-train --preset small --set model.variant=fine_grained

Several processes (DDP or DeepSpeed ZeRO through an accelerate config file)::

    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml \\
        -m repro_cartesian_moe.train --preset small
    accelerate launch --config_file shared/configs/accelerate/deepspeed-zero2.yaml \\
        -m repro_cartesian_moe.train --preset paper

Resume: add ``--run-dir DIR --resume``.
"""

from __future__ import annotations

import sys

from repro_core.cli import train_main
from repro_core.config import package_preset_dirs

from repro_cartesian_moe.config import CartesianMoEModelConfig


def main(argv: list[str] | None = None) -> int:
    return train_main(
        argv,
        model_config_cls=CartesianMoEModelConfig,
        preset_dirs=package_preset_dirs(__file__),
        prog="repro-cartesian-moe-train",
    )


if __name__ == "__main__":
    sys.exit(main())
