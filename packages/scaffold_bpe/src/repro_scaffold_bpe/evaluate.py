"""`repro-scaffold-bpe-lm-eval`: loss, perplexity and bits per byte of a run (the core's `repro-eval`).

The evaluation imports `repro_scaffold_bpe.hf_tokenizer` (which registers `ScaffoldBpeTokenizer`
with `AutoTokenizer`), so a run directory
trained with a Scaffold-BPE tokenizer reloads without remote code. Compare tokenizers by bits per
byte, never by per-token perplexity::

    repro-scaffold-bpe-lm-eval --run runs/sbpe-tiny                 # whole validation split
    repro-scaffold-bpe-lm-eval --run runs/sbpe-tiny --split test
"""

from __future__ import annotations

import sys

from repro_core.cli import eval_main


def main(argv: list[str] | None = None) -> int:
    # the tokenizer module registers ScaffoldBpeTokenizer with AutoTokenizer (after the checks)
    return eval_main(
        argv, prog="repro-scaffold-bpe-lm-eval", imports=("repro_scaffold_bpe.hf_tokenizer",)
    )


if __name__ == "__main__":
    sys.exit(main())
