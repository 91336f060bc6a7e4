"""``repro-maskmoe-eval``: validation loss / perplexity / bits per byte of a run, the loss by
input-token frequency bucket (frequent = top 5% of vocabulary types, middle = 5-20%, rare =
the rest, ranked by the training counts saved in the model) and the expert-load entropy.

    repro-maskmoe-eval --run runs/maskmoe/tiny/maskmoe-f20-v4/seed0
    repro-maskmoe-eval --run DIR --checkpoint latest --split test
"""

from __future__ import annotations

import json
import math
import sys

from repro_core.cli import check_eval_inputs, cli_main, eval_arg_parser
from repro_core.config import UserError


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = eval_arg_parser(
        "repro-maskmoe-eval",
        "Evaluate a MaskMoE / SMoE / Hash run: perplexity, loss by token frequency, expert load.",
    )
    args = p.parse_args(argv)
    check_eval_inputs(args)
    # the heavy stack from here on
    from repro_core.evaluate import load_run, run_split_blocks

    from repro_maskmoe.analysis import BUCKET_EDGES, evaluate_routing
    from repro_maskmoe.frequency import frequency_buckets

    model, tok, cfg = load_run(args.run, args.checkpoint)
    try:
        split, blocks, corpus = run_split_blocks(cfg, tok, args.split, args.corpus)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
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
