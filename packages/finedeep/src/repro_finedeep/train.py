"""``repro-finedeep-train``: the core trainer with the Finedeep model section.

    repro-finedeep-train --preset tiny                                   # Finedeep (2, 4), CPU
    repro-finedeep-train --preset tiny --set model.variant=dense         # the dense baseline
    repro-finedeep-train --preset tiny --set model.num_sublayers=4 --set model.experts_per_sublayer=2
    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml -m repro_finedeep.train --preset small
    repro-finedeep-train --preset tiny --run-dir runs/fd --resume        # continue a run

Presets: debug, tiny, small, paper (packages/finedeep/configs); see the README.
"""

from __future__ import annotations

import sys

from repro_core.cli import train_main
from repro_core.config import package_preset_dirs

from .config import FinedeepModelConfig


def main(argv: list[str] | None = None) -> int:
    """Checks the config (no torch), then trains with the core trainer."""
    return train_main(
        argv,
        model_config_cls=FinedeepModelConfig,
        preset_dirs=package_preset_dirs(__file__),
        prog="repro-finedeep-train",
    )


if __name__ == "__main__":
    sys.exit(main())
