"""Evaluation: loss, perplexity, bits per byte, loss per token position; ``repro-eval``.

Bits per byte compares models with different tokenizers fairly:
``bpb = (mean next-token loss in nats) / ln 2 * (tokens / bytes)``, with tokens/bytes of the
evaluated split (see :class:`~repro_core.data.TokenizedSplit`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def position_losses(
    model,
    blocks: np.ndarray,
    batch_size: int = 16,
    max_batches: int = 0,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, int]:
    """Summed next-token loss per position over validation blocks.

    Args:
        blocks: (N, L) token ids (e.g. :func:`~repro_core.data.as_blocks` of a split).
        max_batches: evaluate only the first ``max_batches`` batches (0 = all blocks).

    Returns:
        ``(sums, count)``: ``sums`` (L-1,) float64 = sum over blocks of the loss of predicting
        token i+1 from tokens 0..i; ``count`` = number of blocks. ``sums / count`` is the loss per
        position and its mean over positions is the ordinary mean loss.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    n = len(blocks) if not max_batches else min(len(blocks), max_batches * batch_size)
    sums = torch.zeros(blocks.shape[1] - 1, dtype=torch.float64)
    for start in range(0, n, batch_size):
        x = torch.from_numpy(np.asarray(blocks[start : min(start + batch_size, n)], dtype=np.int64)).to(device)
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), x[:, 1:], reduction="none"
        )  # (b, L-1)
        sums += loss.double().sum(0).cpu()
    model.train(was_training)
    return sums.numpy(), n


def summarize(mean_loss: float, bytes_per_token: float | None) -> dict[str, float]:
    """Loss (nats/token), perplexity and, given bytes per token, bits per byte."""
    out = {"loss": mean_loss, "perplexity": math.exp(min(mean_loss, 50.0))}
    if bytes_per_token:
        out["bits_per_byte"] = mean_loss / math.log(2) / bytes_per_token
    return out


def evaluate_blocks(model, blocks, bytes_per_token=None, batch_size=16, max_batches=0) -> dict:
    """Mean validation loss, perplexity and bits per byte over ``blocks`` (N, L)."""
    sums, count = position_losses(model, blocks, batch_size, max_batches)
    out = summarize(float(sums.sum() / (count * len(sums))), bytes_per_token)
    out["tokens"] = int(count * len(sums))
    return out


# ----------------------------------------------------------------------------------------------
# repro-eval


def load_run(run_dir: str | Path, checkpoint: str = "final"):
    """Model, tokenizer and resolved config dict of a run directory written by the trainer."""
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import repro_core.modeling  # noqa: F401  (registers the model classes)

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run} is not a run directory (no config.yaml); train one with repro-train")
    if checkpoint == "final":
        model_dir = run / "final"
    elif checkpoint == "latest":
        from .train import latest_checkpoint

        ckpt = latest_checkpoint(run)
        if ckpt is None:
            raise FileNotFoundError(f"{run} has no complete checkpoint under checkpoints/")
        model_dir = ckpt / "model"
    else:
        model_dir = Path(checkpoint)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"no model at {model_dir}: the run has not finished (use --checkpoint latest) or the path is wrong"
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(run / "final" if (run / "final" / "tokenizer_config.json").exists() else model_dir)
    return model, tok, yaml.safe_load((run / "config.yaml").read_text())


def main(argv: list[str] | None = None) -> int:
    from .data import as_blocks, resolve_corpus, tokenize_corpus

    p = argparse.ArgumentParser(prog="repro-eval", description="Evaluate a trained run on a corpus split.")
    p.add_argument("--run", required=True, help="run directory written by repro-train")
    p.add_argument("--checkpoint", default="final", help="final | latest | a model directory")
    p.add_argument("--split", default="validation", help="validation | test | train")
    p.add_argument("--corpus", default=None, help="corpus to evaluate on (default: the run's)")
    p.add_argument("--batches", type=int, default=0, help="evaluate this many batches (0 = whole split)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--per-position", action="store_true", help="also print the loss per position")
    args = p.parse_args(argv)
    model, tok, cfg = load_run(args.run, args.checkpoint)
    corpus = resolve_corpus(args.corpus or cfg["data"]["corpus"])
    splits = tokenize_corpus(corpus, tok, cfg["data"]["val_fraction"])
    if args.split not in splits:
        print(f"split {args.split!r} not in corpus {corpus.name!r}; available: {sorted(splits)}", file=sys.stderr)
        return 2
    split = splits[args.split]
    blocks = as_blocks(split.tokens, cfg["data"]["seq_len"])
    sums, count = position_losses(model, blocks, args.batch_size, args.batches)
    result = summarize(float(sums.sum() / (count * len(sums))), split.bytes_per_token)
    result.update(split=args.split, corpus=corpus.name, tokens=int(count * len(sums)))
    if args.per_position:
        result["loss_per_position"] = (sums / count).tolist()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
