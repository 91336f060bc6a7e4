"""``repro-cartesian-moe-eval``: validation loss / perplexity / bits per byte of a run, expert
load balance, and the routing-robustness evaluation of the paper's Table 4 (each token's top-1
expert disabled in every router; the ratio of the two perplexities).

    repro-cartesian-moe-eval --run runs/cartesian_moe/tiny/cartesian/seed0 --disable-top1
    repro-cartesian-moe-eval --run DIR --disable-top1 --sublayers a    # Cartesian: router A only
"""

from __future__ import annotations

import json
import sys

from repro_core import no_grad
from repro_core.cli import check_eval_inputs, cli_main, eval_arg_parser


@no_grad
def evaluate_model(
    model,
    blocks,
    bytes_per_token: float | None,
    batch_size: int = 16,
    max_batches: int = 0,
    disable_top1: bool = True,
    sublayers: tuple[str, ...] = ("a", "b"),
) -> dict:
    """Evaluate ``model`` on ``blocks`` (N, L) intact and, if asked, with top-1 disabled.

    Returns ``{"intact": {loss, perplexity, bits_per_byte, tokens}, "expert_load": {...}}`` and,
    with ``disable_top1``, ``"top1_disabled"`` (same keys) and
    ``"top1_disabled_ppl_ratio"`` = disabled / intact perplexity. Dense models (no router)
    report ``top1_disabled = None``.
    """
    from repro_core.evaluate import evaluate_blocks

    from repro_cartesian_moe.modeling import (
        expert_load_summary,
        record_expert_load,
        set_disable_top1,
    )

    record_expert_load(model, True)
    intact = evaluate_blocks(model, blocks, bytes_per_token, batch_size, max_batches)
    out = {"intact": intact, "expert_load": expert_load_summary(model)}
    record_expert_load(model, False)
    if disable_top1:
        if set_disable_top1(model, True, sublayers):
            try:
                broken = evaluate_blocks(model, blocks, bytes_per_token, batch_size, max_batches)
            finally:
                set_disable_top1(model, False)
            out["top1_disabled"] = broken
            out["top1_disabled_ppl_ratio"] = broken["perplexity"] / intact["perplexity"]
        else:
            out["top1_disabled"] = None
            out["top1_disabled_ppl_ratio"] = None
    return out


@cli_main
def main(argv: list[str] | None = None) -> int:
    from repro_core.config import UserError

    p = eval_arg_parser(
        "repro-cartesian-moe-eval",
        "Evaluate a CartesianMoE run: perplexity, bits/byte, expert load, top-1 disabled.",
    )
    p.add_argument(
        "--disable-top1",
        action="store_true",
        help="also evaluate with each token's top-1 expert disabled in every router",
    )
    p.add_argument(
        "--sublayers",
        default="ab",
        choices=["ab", "a", "b"],
        help="Cartesian blocks: which sub-layer routers --disable-top1 covers (default both)",
    )
    p.add_argument(
        "--per-router", action="store_true", help="print tokens per expert of each router"
    )
    args = p.parse_args(argv)
    check_eval_inputs(args)
    # the heavy stack from here on
    from repro_core.evaluate import load_run, run_split_blocks

    from repro_cartesian_moe import modeling  # noqa: F401  (registers the model with transformers)

    model, tok, cfg = load_run(args.run, args.checkpoint)
    try:
        split, blocks, corpus = run_split_blocks(cfg, tok, args.split, args.corpus)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    result = evaluate_model(
        model,
        blocks,
        split.bytes_per_token,
        args.batch_size,
        args.batches,
        args.disable_top1,
        tuple(args.sublayers),
    )
    if not args.per_router:
        result["expert_load"].pop("routers")
    result.update(
        split=args.split, corpus=corpus.name, variant=getattr(model.config, "moe_variant", None)
    )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
