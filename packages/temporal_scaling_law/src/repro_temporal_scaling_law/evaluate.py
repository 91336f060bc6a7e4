"""``repro-temporal-scaling-law-eval``: loss, perplexity, bits per byte (and per position) of a run.

The model is the core's dense decoder, so this is the core evaluator (``repro-eval``); add
``--per-position`` for the loss of every token position of the final model. Fitting the temporal
law to a run's logged per-position curves is ``repro-tsl-fit --run RUN`` (see the README)::

    repro-temporal-scaling-law-eval --run runs/tsl-tiny --per-position
"""

from __future__ import annotations

import sys

from repro_core.cli import eval_main


def main(argv: list[str] | None = None) -> int:
    return eval_main(argv, prog="repro-temporal-scaling-law-eval")


if __name__ == "__main__":
    sys.exit(main())
