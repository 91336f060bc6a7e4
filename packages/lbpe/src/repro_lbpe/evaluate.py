"""`repro-lbpe-eval`: loss, perplexity and bits per byte of a run (the core's `repro-eval`) with
`LbpeTokenizer` registered, so run directories trained with LBPE reload without remote code.
Compare tokenizers by bits per byte, never by per-token perplexity::

    repro-lbpe-eval --run runs/lbpe-tiny
    repro-lbpe-eval --run runs/lbpe-tiny --split test
"""

from __future__ import annotations

import sys

from repro_core.evaluate import main as core_main

import repro_lbpe.tokenizer  # noqa: F401  (AutoTokenizer registration)


def main(argv: list[str] | None = None) -> int:
    return core_main(argv)


if __name__ == "__main__":
    sys.exit(main())
