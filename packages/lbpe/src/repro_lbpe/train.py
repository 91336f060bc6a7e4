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

from repro_core.cli import check_inputs as core_check_inputs
from repro_core.cli import core_run, train_main
from repro_core.config import package_preset_dirs


def check_inputs(cfg) -> None:
    """Before torch: the corpus and base checkpoint (core) and an ``lbpe:...`` tokenizer spec."""
    core_check_inputs(cfg)
    if cfg.data.tokenizer and cfg.data.tokenizer.startswith("lbpe:"):
        from repro_lbpe.spec import check_spec  # numba, not torch

        check_spec(cfg.data.tokenizer.split(":", 1)[1])


def run(cfg, run_dir, resume: bool = False, overwrite: bool = False) -> dict:
    """The core trainer, with `LbpeTokenizer` registered with `AutoTokenizer`."""
    import repro_lbpe.tokenizer  # noqa: F401  (AutoTokenizer registration)

    return core_run(cfg, run_dir, resume=resume, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    """Checks the config and the tokenizer spec (no torch), then trains with the core trainer."""
    return train_main(
        argv,
        preset_dirs=package_preset_dirs(__file__),
        prog="repro-lbpe-train",
        run=run,
        validate=check_inputs,
    )


if __name__ == "__main__":
    sys.exit(main())
