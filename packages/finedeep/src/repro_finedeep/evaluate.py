"""``repro-finedeep-eval``: loss, perplexity, bits per byte and NSAR of a trained run.

    repro-finedeep-eval --run runs/finedeep/tiny/finedeep-2x4/seed0            # validation split
    repro-finedeep-eval --run RUN --split test --batches 0 --out nsar.json     # whole test split

NSAR is reported for the SiLU output and for silu(gate)*up at each threshold.
"""

from __future__ import annotations

import argparse
import json
import sys

from repro_core.data import as_blocks, resolve_corpus, tokenize_corpus
from repro_core.evaluate import evaluate_blocks, load_run
from repro_core.results import write_text_atomic

from . import modeling  # noqa: F401  (registers FinedeepForCausalLM with AutoModelForCausalLM)
from .nsar import THRESHOLDS, measure_nsar


def evaluate_model(
    model, blocks, bytes_per_token, batch_size=16, max_batches=0, thresholds=THRESHOLDS
) -> dict:
    """``{loss, perplexity, bits_per_byte, tokens, nsar}`` of ``model`` on ``blocks`` (N, L)."""
    out = evaluate_blocks(model, blocks, bytes_per_token, batch_size, max_batches)
    out["nsar"] = measure_nsar(model, blocks, batch_size, max_batches, thresholds)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="repro-finedeep-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run directory written by repro-finedeep-train")
    p.add_argument("--checkpoint", default="final", help="final | latest | a model directory")
    p.add_argument("--split", default="validation", help="validation | test | train")
    p.add_argument("--batches", type=int, default=16, help="batches to evaluate (0 = whole split)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--thresholds",
        default=",".join(map(str, THRESHOLDS)),
        help="NSAR thresholds, comma-separated",
    )
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    model, tok, cfg = load_run(args.run, args.checkpoint)
    splits = tokenize_corpus(
        resolve_corpus(cfg["data"]["corpus"]), tok, cfg["data"]["val_fraction"]
    )
    if args.split not in splits:
        print(
            f"split {args.split!r} not in the corpus; available: {sorted(splits)}", file=sys.stderr
        )
        return 2
    split = splits[args.split]
    thresholds = [float(t) for t in args.thresholds.split(",")]
    result = evaluate_model(
        model,
        as_blocks(split.tokens, cfg["data"]["seq_len"]),
        split.bytes_per_token,
        args.batch_size,
        args.batches,
        thresholds,
    )
    result.update(run=str(args.run), split=args.split)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
