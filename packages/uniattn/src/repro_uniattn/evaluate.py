"""``repro-uniattn-eval``: task and base-corpus quality plus the inference cost of a run.

    repro-uniattn-eval --run runs/uniattn/tiny/uniattn/seed0
    repro-uniattn-eval --run RUN --base-corpus wikitext-2 --batches 0 --out eval.json

Reports the held-out response loss / exact match on the task corpus of the run (when it is the
synthetic family or a folder with ``heldout.json``), the loss / perplexity on the base corpus
(forgetting), KV bytes per token, softmax calls per token and parameters.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from repro_core.cli import ArgumentParser, check_run, cli_main
from repro_core.data import as_blocks, resolve_corpus, tokenize_corpus
from repro_core.results import write_text_atomic

from .task import evaluate_task, resolve_task_corpus


def kv_bytes_per_token(model) -> float:
    """Bytes cached per token: every layer's K and V, minus what reusing layers do not keep."""
    c = model.config
    per_tensor = c.num_key_value_heads * c.head_dim * next(model.parameters()).element_size()
    tensors = 2 * c.num_hidden_layers
    if hasattr(c, "reusing_layers"):
        n = len(c.reusing_layers())
        tensors -= n if c.uniattn_sharing == "softmax" else 2 * n
    return float(tensors * per_tensor)


def base_corpus_quality(
    model, tokenizer, corpus: str, seq_len: int, batches: int, batch_size=8
) -> dict:
    """Validation loss / perplexity of ``model`` on ``corpus`` (the pretraining corpus)."""
    from repro_core.evaluate import evaluate_blocks

    split = tokenize_corpus(resolve_corpus(corpus), tokenizer)["validation"]
    out = evaluate_blocks(
        model, as_blocks(split.tokens, seq_len), split.bytes_per_token, batch_size, batches
    )
    return {f"base_{k}": v for k, v in out.items()}


def evaluate_model(model, tokenizer, task_corpus, base_corpus, seq_len=256, batches=16) -> dict:
    from repro_core.modeling import count_parameters

    from .bench import softmax_calls_per_token

    out = {}
    if (Path(resolve_task_corpus(task_corpus)) / "heldout.json").is_file():
        out.update(evaluate_task(model, tokenizer, task_corpus))
    if base_corpus:
        out.update(base_corpus_quality(model, tokenizer, base_corpus, seq_len, batches))
    out.update(
        kv_bytes_per_token=kv_bytes_per_token(model),
        softmax_calls_per_token=softmax_calls_per_token(model),
        parameters=count_parameters(model)["total"],
    )
    return out


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-uniattn-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run directory written by repro-uniattn-train")
    p.add_argument("--checkpoint", default="final", help="final | latest | a model directory")
    p.add_argument("--base-corpus", default="wikitext-2", help="pretraining corpus ('' = skip)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batches", type=int, default=16, help="base-corpus batches (0 = all)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    check_run(args.run, args.checkpoint)
    if args.base_corpus:
        resolve_corpus(args.base_corpus)
    # the heavy stack from here on
    from repro_core.evaluate import load_run

    from . import modeling  # noqa: F401  (registers UniAttnForCausalLM with AutoModelForCausalLM)

    model, tok, cfg = load_run(args.run, args.checkpoint)
    result = evaluate_model(
        model.eval(), tok, cfg["data"]["corpus"], args.base_corpus, args.seq_len, args.batches
    )
    result["run"] = str(args.run)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
