"""`repro-lbpe-train`: the core trainer with an LBPE tokenizer (LBPE changes only the encoding,
so the model is the core's dense `DecoderLM`).

`data.tokenizer=lbpe:...` is resolved by the core through the `repro.tokenizers` plug-in of this
package (`repro_lbpe.tokenizer.from_spec`); `repro-train --set data.tokenizer=lbpe:...` works the
same way once repro-lbpe is installed.

    repro-lbpe-train --preset tiny --run-dir runs/lbpe-tiny                        # LBPE-B, N=4096
    repro-lbpe-train --preset tiny --set data.tokenizer=lbpe:4096:reading=bpe      # BPE baseline
    repro-lbpe-train --preset tiny --set data.tokenizer=lbpe:scaffold:4096         # LBPE + Scaffold-BPE
    repro-lbpe-train --preset tiny --set data.tokenizer=lbpe:4096:tie=rank --run-dir runs/x --resume
    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml \\
        -m repro_lbpe.train --preset small --run-dir runs/lbpe-small
"""

from __future__ import annotations

import sys

from repro_core.config import package_preset_dirs
from repro_core.train import main as core_main

import repro_lbpe.tokenizer  # noqa: F401  (AutoTokenizer registration)


def main(argv: list[str] | None = None) -> int:
    return core_main(argv, preset_dirs=package_preset_dirs(__file__), prog="repro-lbpe-train")


if __name__ == "__main__":
    sys.exit(main())
