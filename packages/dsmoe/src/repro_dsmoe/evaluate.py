"""``repro-dsmoe-eval``: perplexity, bits per byte and expert activation of a trained run.

    repro-dsmoe-eval --run runs/dsmoe/tiny/dsmoe/seed0                       # tau of the run
    repro-dsmoe-eval --run RUN --taus 0.2,0.3,0.4,0.5,0.6,0.7,0.8 --out sweep.json
    repro-dsmoe-eval --model DIR --corpus wikitext-2 --seq-len 256           # any saved model

Reports, per evaluation threshold: validation loss / perplexity / bits per byte, the mean number
of active experts per token (overall and per layer), the activated FFN fraction and the
activated parameters (embeddings and attention included, as the paper counts them).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from repro_core import no_grad
from repro_core.cli import ArgumentParser, check_run, cli_main
from repro_core.config import MissingInputError, UserError
from repro_core.results import write_text_atomic

from .accounting import dsmoe_parameter_counts


@contextlib.contextmanager
def recording(model):
    """Reset and enable the routing statistics of every DSMoE block for the ``with`` body."""
    from .modeling import DSMoEMLP

    blocks = [m for m in model.modules() if isinstance(m, DSMoEMLP)]
    for b in blocks:
        b.stats.reset()
        b.record_stats = True
    try:
        yield blocks
    finally:
        for b in blocks:
            b.record_stats = False


def activation_report(model, num_experts: int = 8) -> dict:
    """Mean active experts per token (overall, per layer) of the last :func:`recording`, or the
    kept fraction of a pruned model; ``activated_ffn_fraction`` and ``activated_parameters``.
    ``num_experts`` is the unit for a dense model (all of its n blocks are active)."""
    from .baselines import PrunedMLP
    from .modeling import DSMoEMLP

    config = model.config
    n = getattr(config, "num_experts", num_experts)
    layers = [layer.mlp for layer in model.model.layers]
    if all(isinstance(m, DSMoEMLP) for m in layers):
        per_layer = [m.stats.mean_active for m in layers]
    elif all(isinstance(m, PrunedMLP) for m in layers):
        per_layer = [m.kept_fraction() * n for m in layers]
    else:  # dense
        per_layer = [float(n)] * len(layers)
    counts = dsmoe_parameter_counts(config, n, per_layer)
    if not all(isinstance(m, DSMoEMLP) for m in layers):  # no router
        counts["activated"] -= counts["router"]
    return {
        "mean_active_experts": sum(per_layer) / len(per_layer),
        "active_experts_per_layer": per_layer,
        "activated_ffn_fraction": counts["activated_ffn_fraction"],
        "activated_parameters": counts["activated"],
    }


@no_grad
def evaluate_model(
    model, blocks, bytes_per_token, batch_size=16, max_batches=0, tau=None, num_experts=8
) -> dict:
    """Loss / perplexity / bits per byte and activation of ``model`` on ``blocks`` (N, L).

    ``tau`` overrides the evaluation threshold of every DSMoE block for this call only;
    ``num_experts`` counts a dense model's FFN as that many (all active) blocks.
    """
    from repro_core.evaluate import evaluate_blocks

    from .modeling import DSMoEMLP, set_tau

    blocks_ = [m for m in model.modules() if isinstance(m, DSMoEMLP)]
    saved = [b.eval_tau for b in blocks_]
    if tau is not None:
        set_tau(model, eval_tau=tau)
    try:
        with recording(model):
            out = evaluate_blocks(model, blocks, bytes_per_token, batch_size, max_batches)
            out.update(activation_report(model, num_experts))
    finally:
        for b, t in zip(blocks_, saved):
            b.eval_tau = t
    if tau is not None:
        out["tau"] = tau
    return out


def tau_sweep(model, blocks, bytes_per_token, taus, batch_size=16, max_batches=0) -> list[dict]:
    """:func:`evaluate_model` at each evaluation threshold in ``taus``."""
    return [
        evaluate_model(model, blocks, bytes_per_token, batch_size, max_batches, t) for t in taus
    ]


@cli_main
def main(argv: list[str] | None = None) -> int:
    from repro_core.data import as_blocks, get_tokenizer, resolve_corpus, tokenize_corpus

    p = ArgumentParser(prog="repro-dsmoe-eval", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory written by repro-dsmoe-train")
    src.add_argument("--model", help="a saved model directory (with its tokenizer)")
    p.add_argument("--corpus", default="wikitext-2", help="with --model: the corpus")
    p.add_argument("--seq-len", type=int, default=256, help="with --model: block length")
    p.add_argument("--split", default="validation")
    p.add_argument("--taus", default="", help="comma-separated evaluation thresholds")
    p.add_argument("--batches", type=int, default=16, help="batches (0 = whole split)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    # checks first (no torch): the run or model, the corpus, the thresholds
    try:
        taus = [float(t) for t in args.taus.split(",") if t.strip()] or [None]
    except ValueError:
        raise UserError(f"--taus {args.taus!r}: expected numbers, e.g. 0.3,0.5") from None
    if any(t is not None and not 0 <= t < 1 for t in taus):
        raise UserError(f"--taus {args.taus!r}: every threshold must be in [0, 1)")
    if args.batches < 0 or args.batch_size < 1:
        raise UserError("--batches must be >= 0 (0 = whole split) and --batch-size >= 1")
    if args.run:
        cfg = check_run(args.run, "final")
        corpus, seq_len, val_fraction = (
            cfg["data"]["corpus"],
            cfg["data"]["seq_len"],
            cfg["data"]["val_fraction"],
        )
    else:
        if not (Path(args.model) / "config.json").is_file():
            raise MissingInputError(f"--model {args.model}: no model there (no config.json)")
        corpus, seq_len, val_fraction = args.corpus, args.seq_len, 0.1
    corpus_path = resolve_corpus(corpus)
    # the heavy stack from here on
    from . import modeling  # noqa: F401  (registers DSMoEForCausalLM with AutoModelForCausalLM)

    if args.run:
        from repro_core.evaluate import load_run

        model, tok, cfg = load_run(args.run, "final")
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.model)
        tok = get_tokenizer(args.model)
    splits = tokenize_corpus(corpus_path, tok, val_fraction)
    if args.split not in splits:
        raise UserError(f"split {args.split!r} not in the corpus; available: {sorted(splits)}")
    split = splits[args.split]
    blocks = as_blocks(split.tokens, seq_len)
    result = [
        evaluate_model(model, blocks, split.bytes_per_token, args.batch_size, args.batches, t)
        for t in taus
    ]
    text = json.dumps(result if len(result) > 1 else result[0], indent=1)
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
