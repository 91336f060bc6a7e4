"""`repro-scaffold-bpe-lm-eval`: loss, perplexity and bits per byte of a run (the core's `repro-eval`).

Importing this module registers `ScaffoldBpeTokenizer` with `AutoTokenizer`, so a run directory
trained with a Scaffold-BPE tokenizer reloads without remote code. Compare tokenizers by bits per
byte, never by per-token perplexity::

    repro-scaffold-bpe-lm-eval --run runs/sbpe-tiny                 # whole validation split
    repro-scaffold-bpe-lm-eval --run runs/sbpe-tiny --split test
"""

from __future__ import annotations

import sys

from repro_core.evaluate import main as core_main

import repro_scaffold_bpe.hf_tokenizer  # noqa: F401  (registers the tokenizer with AutoTokenizer)


def main(argv: list[str] | None = None) -> int:
    return core_main(argv)


if __name__ == "__main__":
    sys.exit(main())
