"""`repro-lbpe-eval`: loss, perplexity and bits per byte of a run (the core's `repro-eval`) with
`LbpeTokenizer` registered, so run directories trained with LBPE reload without remote code.
Compare tokenizers by bits per byte, never by per-token perplexity::

    repro-lbpe-eval --run runs/lbpe-tiny
    repro-lbpe-eval --run runs/lbpe-tiny --split test
"""

from __future__ import annotations

import sys

from repro_core.cli import eval_main


def main(argv: list[str] | None = None) -> int:
    """The core's `repro-eval`: checks first, then imports `repro_lbpe.tokenizer` (registers
    `LbpeTokenizer` with `AutoTokenizer`) and evaluates."""
    return eval_main(argv, prog="repro-lbpe-eval", imports=("repro_lbpe.tokenizer",))


if __name__ == "__main__":
    sys.exit(main())
