"""Evaluation: loss, perplexity, bits per byte, loss per token position; ``repro-eval``.

Bits per byte compares models with different tokenizers fairly:
``bpb = (mean next-token loss in nats) / ln 2 * (tokens / bytes)``, with tokens/bytes of the
evaluated split (see :class:`~repro_core.data.TokenizedSplit`).
"""

from __future__ import annotations

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
        x = torch.from_numpy(
            np.asarray(blocks[start : min(start + batch_size, n)], dtype=np.int64)
        ).to(device)
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
# Whole texts, lm-eval's rolling windows (an independent check of the lm-eval harness)


@torch.no_grad()
def rolling_loglikelihood(
    model,
    token_ids: list[int],
    max_length: int,
    prefix_token_id: int,
    batch_size: int = 8,
    forward_kwargs=None,
) -> float:
    """Summed log-likelihood (nats) of every token of one text, in disjoint windows.

    The scheme of lm-eval's ``loglikelihood_rolling`` with one token of context: prepend
    ``prefix_token_id`` (s = [prefix] + ids, target i is s[i]); the first window feeds
    s[0:L] and scores s[1:L+1]; each later window ends L targets further (the last one at the
    end of the text), feeds the L tokens before its end and scores only the targets not scored
    yet, so every token is predicted exactly once with at most L tokens of input.

    Args:
        token_ids: the text's token ids (no special tokens).
        max_length: L, the window length in tokens.
        forward_kwargs: extra forward inputs, see :func:`repro_core.harness.model_logits`.
    """
    from .harness import model_logits

    s = [prefix_token_id, *token_ids]
    n = len(token_ids)
    windows = []  # (input start, input end, first scored target index in s)
    scored_up_to = 0  # targets s[1..scored_up_to] are done
    while scored_up_to < n:
        end = min(scored_up_to + max_length, n)  # last target of this window: s[end]
        start = max(0, end - max_length)
        windows.append((start, end, scored_up_to + 1))
        scored_up_to = end
    device = next(model.parameters()).device
    total = 0.0
    for b in range(0, len(windows), batch_size):
        chunk = windows[b : b + batch_size]
        width = max(end - start for start, end, _ in chunk)
        x = torch.full((len(chunk), width), prefix_token_id, dtype=torch.long)
        for row, (start, end, _) in enumerate(chunk):
            x[row, : end - start] = torch.tensor(s[start:end])
        logits = model_logits(model, x.to(device), forward_kwargs)  # (b, width, V)
        for row, (start, end, first) in enumerate(chunk):
            # logits at input position p (absolute start + p) predict s[start + p + 1]
            targets = torch.tensor(s[first : end + 1], device=logits.device)
            log_probs = F.log_softmax(logits[row, first - 1 - start : end - start].float(), -1)
            total += float(log_probs.gather(-1, targets[:, None]).double().sum())
    return total


def rolling_bits_per_byte(
    model,
    tokenizer,
    texts: list[str],
    max_length: int | None = None,
    prefix_token_id: int | None = None,
    num_bytes: list[int] | None = None,
    batch_size: int = 8,
    forward_kwargs=None,
) -> dict[str, float]:
    """Bits per byte of raw texts, each scored whole with :func:`rolling_loglikelihood`.

    ``bits_per_byte = -sum(loglikelihood) / ln 2 / sum(bytes)``; ``bytes`` are the UTF-8 lengths
    of ``texts`` unless ``num_bytes`` gives them (lm-eval's ``wikitext`` scores the detokenized
    page but divides by the bytes of the original page). ``max_length`` defaults to
    ``config.max_position_embeddings``, ``prefix_token_id`` to the tokenizer's eos id.

    Returns ``{bits_per_byte, byte_perplexity, loglikelihood, tokens, bytes}``.
    """
    from .harness import _default_max_length, token_encoder

    encode = token_encoder(tokenizer)
    max_length = max_length or _default_max_length(model)
    prefix = prefix_token_id if prefix_token_id is not None else tokenizer.eos_token_id
    if prefix is None:
        raise ValueError("the tokenizer has no eos_token_id: pass prefix_token_id=")
    was_training = model.training
    model.eval()
    loglik, tokens = 0.0, 0
    for text in texts:
        ids = encode(text)
        tokens += len(ids)
        loglik += rolling_loglikelihood(model, ids, max_length, prefix, batch_size, forward_kwargs)
    model.train(was_training)
    total_bytes = (
        sum(num_bytes) if num_bytes is not None else sum(len(t.encode("utf-8")) for t in texts)
    )
    return {
        "bits_per_byte": -loglik / math.log(2) / total_bytes,
        "byte_perplexity": math.exp(-loglik / total_bytes),
        "loglikelihood": loglik,
        "tokens": tokens,
        "bytes": total_bytes,
    }


# ----------------------------------------------------------------------------------------------
# repro-eval


def load_run(run_dir: str | Path, checkpoint: str = "final"):
    """Model, tokenizer and resolved config dict of a run directory written by the trainer.

    A dense run's model (saved as a plain Llama checkpoint) comes back as a ``DecoderLM``;
    other model types through ``AutoModelForCausalLM`` (their package must be imported).
    """
    import yaml
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .cli import check_run
    from .config import MissingInputError
    from .modeling import load_llama_checkpoint

    run = Path(run_dir)
    check_run(run, checkpoint)
    if checkpoint == "final":
        model_dir = run / "final"
    elif checkpoint == "latest":
        from .train import latest_checkpoint

        ckpt = latest_checkpoint(run)
        if ckpt is None:
            raise MissingInputError(f"{run} has no complete checkpoint under checkpoints/")
        model_dir = ckpt / "model"
    else:
        model_dir = Path(checkpoint)
    if AutoConfig.from_pretrained(model_dir).model_type == "llama":
        model = load_llama_checkpoint(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(
        run / "final" if (run / "final" / "tokenizer_config.json").exists() else model_dir
    )
    return model, tok, yaml.safe_load((run / "config.yaml").read_text())


def run_split_blocks(cfg: dict, tokenizer, split_name: str, corpus_name: str | None = None):
    """Blocks of one split of a run's corpus (or ``corpus_name``), packed as the run was.

    Returns ``(TokenizedSplit, blocks (N, seq_len), Corpus)``; raises KeyError with a message
    listing the available splits.
    """
    from .data import as_blocks, resolve_corpus, tokenize_corpus

    corpus = resolve_corpus(corpus_name or cfg["data"]["corpus"])
    splits = tokenize_corpus(corpus, tokenizer, cfg["data"]["val_fraction"])
    if split_name not in splits:
        raise KeyError(
            f"split {split_name!r} not in corpus {corpus.name!r}; available: {sorted(splits)}"
        )
    split = splits[split_name]
    return split, as_blocks(split.tokens, cfg["data"]["seq_len"]), corpus


def evaluate_run(
    run: str | Path,
    checkpoint: str = "final",
    split_name: str = "validation",
    corpus_name: str | None = None,
    batches: int = 0,
    batch_size: int = 16,
    per_position: bool = False,
) -> dict:
    """``repro-eval``'s result: loss, perplexity, bits per byte of a run on a corpus split, with
    the data settings of the run (its ``config.yaml``) unless ``corpus_name`` is given."""
    from .config import UserError

    model, tok, cfg = load_run(run, checkpoint)
    try:
        split, blocks, corpus = run_split_blocks(cfg, tok, split_name, corpus_name)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    sums, count = position_losses(model, blocks, batch_size, batches)
    result = summarize(float(sums.sum() / (count * len(sums))), split.bytes_per_token)
    result.update(split=split_name, corpus=corpus.name, tokens=int(count * len(sums)))
    if per_position:
        result["loss_per_position"] = (sums / count).tolist()
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m repro_core.evaluate``; the same as ``repro-eval`` (:func:`repro_core.cli.eval_main`)."""
    from .cli import eval_main

    return eval_main(argv)


if __name__ == "__main__":
    sys.exit(main())
