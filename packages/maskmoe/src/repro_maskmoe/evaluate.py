"""``repro-maskmoe-eval``: validation loss / perplexity / bits per byte of a run, the loss by
input-token frequency bucket (frequent = top 5% of vocabulary types, middle = 5-20%, rare =
the rest, ranked by the training counts saved in the model) and the expert-load entropy.

    repro-maskmoe-eval --run runs/maskmoe/tiny/maskmoe-f20-v4/seed0
    repro-maskmoe-eval --run DIR --checkpoint latest --split test
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from repro_maskmoe.analysis import BUCKET_EDGES, evaluate_routing
from repro_maskmoe.frequency import frequency_buckets


def main(argv: list[str] | None = None) -> int:
    from repro_core.evaluate import load_run, run_split_blocks

    p = argparse.ArgumentParser(
        prog="repro-maskmoe-eval",
        description="Evaluate a MaskMoE / SMoE / Hash run: perplexity, loss by token frequency, "
        "expert load.",
    )
    p.add_argument("--run", required=True, help="run directory written by repro-maskmoe-train")
    p.add_argument("--checkpoint", default="final", help="final | latest | a model directory")
    p.add_argument("--split", default="validation", help="validation | test | train")
    p.add_argument("--corpus", default=None, help="corpus to evaluate on (default: the run's)")
    p.add_argument("--batches", type=int, default=0, help="this many batches (0 = whole split)")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    model, tok, cfg = load_run(args.run, args.checkpoint)
    try:
        split, blocks, corpus = run_split_blocks(cfg, tok, args.split, args.corpus)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    buckets = frequency_buckets(model.token_counts.cpu().numpy(), BUCKET_EDGES)
    result = evaluate_routing(model, blocks, buckets, args.batch_size, args.batches)
    result["bits_per_byte"] = result["loss"] / math.log(2) / split.bytes_per_token
    result.update(
        split=args.split,
        corpus=corpus.name,
        routing=model.config.routing,
        frequent_types=model.config.num_frequent_tokens,
    )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
