"""``repro-finedeep-eval``: loss, perplexity, bits per byte and NSAR of a trained run.

    repro-finedeep-eval --run runs/finedeep/tiny/finedeep-2x4/seed0            # validation split
    repro-finedeep-eval --run RUN --split test --batches 0 --out nsar.json     # whole test split

NSAR is reported for the SiLU output and for silu(gate)*up at each threshold.
"""

from __future__ import annotations

import json
import sys

from repro_core.cli import check_eval_inputs, cli_main, eval_arg_parser


def evaluate_model(
    model, blocks, bytes_per_token, batch_size=16, max_batches=0, thresholds=None
) -> dict:
    """``{loss, perplexity, bits_per_byte, tokens, nsar}`` of ``model`` on ``blocks`` (N, L)."""
    from repro_core.evaluate import evaluate_blocks

    from .nsar import THRESHOLDS, measure_nsar

    out = evaluate_blocks(model, blocks, bytes_per_token, batch_size, max_batches)
    out["nsar"] = measure_nsar(
        model, blocks, batch_size, max_batches, THRESHOLDS if thresholds is None else thresholds
    )
    return out


@cli_main
def main(argv: list[str] | None = None) -> int:
    from repro_core.config import UserError

    p = eval_arg_parser("repro-finedeep-eval", __doc__.split("\n\n")[0])
    p.set_defaults(batches=16)
    p.add_argument(
        "--thresholds",
        default=None,
        help="NSAR thresholds, comma-separated (default 0.01,0.05,0.1)",
    )
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    try:
        thresholds = [float(t) for t in args.thresholds.split(",")] if args.thresholds else None
    except ValueError:
        raise UserError(
            f"--thresholds {args.thresholds!r}: expected numbers, e.g. 0,0.01"
        ) from None
    check_eval_inputs(args)
    # the heavy stack from here on
    from repro_core.evaluate import load_run, run_split_blocks
    from repro_core.results import write_text_atomic

    from . import modeling  # noqa: F401  (registers FinedeepForCausalLM with AutoModelForCausalLM)

    model, tok, cfg = load_run(args.run, args.checkpoint)
    try:
        split, blocks, _ = run_split_blocks(cfg, tok, args.split, args.corpus)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    result = evaluate_model(
        model, blocks, split.bytes_per_token, args.batch_size, args.batches, thresholds
    )
    result.update(run=str(args.run), split=args.split)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
