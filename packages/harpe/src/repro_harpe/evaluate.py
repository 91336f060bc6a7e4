"""``repro-harpe-eval``: long-context evaluation of a checkpoint.

    repro-harpe-eval --model runs/harpe/tiny/harpe-uniform/seed0/final
    repro-harpe-eval --model DIR --lengths 128,256,512,1024,2048 --depths 0,0.5,1 --samples 4

* Retrieval (RULER-style tasks of :mod:`repro_harpe.tasks`): accuracy = ``string_match_all`` of
  the greedy generation (as many tokens as the reference answer plus 2), by task, length and
  depth.
* Sliding-window perplexity (Press et al. 2022; spec section 6, item 13): held-out prose scored
  with a context of L tokens advancing ``stride`` (256) tokens at a time, every token scored
  once with up to L tokens before it; L = 256 ... 2048.
* Short-context perplexity: the same prose in disjoint blocks of the base length (128).
* Induction: ``period`` random token ids repeated once; accuracy of the greedy next-token
  prediction over the repeated half (chance ~ 1 / vocabulary). Retrieval needs this copy
  mechanism; a model without it scores 0 on every task whatever its RoPE.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from repro_core import no_grad
from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import MissingInputError, UserError
from repro_core.results import write_text_atomic

from .corpus import prose_eval_ids, token_counter
from .tasks import (
    DEFAULT_SETTINGS,
    DEPTH_TASKS,
    TASKS,
    TaskSettings,
    build_sample,
    string_match_all,
)


@no_grad
def greedy_predictions(
    model, tokenizer, samples, batch_size: int = 8, extra_tokens: int = 2
) -> list[str]:
    """Greedy continuation of each prompt (``generate``, KV cache), as many tokens as the
    sample's target has plus ``extra_tokens``; prompts of similar length are batched with left
    padding (the core counts positions over real tokens only)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    prompts = [tokenizer(s.prompt, add_special_tokens=False)["input_ids"] for s in samples]
    budget = [
        len(tokenizer(s.target, add_special_tokens=False)["input_ids"]) + extra_tokens
        for s in samples
    ]
    order = sorted(range(len(samples)), key=lambda i: len(prompts[i]))
    preds: list[str] = [""] * len(samples)
    pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        new = max(budget[i] for i in chunk)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=new,
            min_new_tokens=new, do_sample=False, pad_token_id=pad,
        )  # fmt: skip
        for row, i in enumerate(chunk):
            preds[i] = tokenizer.decode(out[row, width : width + budget[i]].tolist())
    return preds


def retrieval_accuracy(
    model,
    tokenizer,
    lengths=(128, 256, 512, 1024, 2048),
    depths=(0.0, 0.5, 1.0),
    samples: int = 4,
    tasks=TASKS,
    seed: int = 42,
    settings: TaskSettings = DEFAULT_SETTINGS,
    batch_size: int = 8,
) -> dict:
    """``{task: {length: {depth: accuracy}}}`` (string_match_all, 0-100) plus means.

    Returns ``{"cells": [...], "by_task_length": {...}, "passkey@L": ..., "ruler@L": ...}``: the
    per-cell rows, the mean over depths per task and length, and flat metrics: passkey accuracy
    and the RULER-subset mean (niah_single, niah_multikey, vt, cwe) at each length. A task that
    does not fit in a length (cwe at 128 tokens of the tiny tokenizer) has no cell there and is
    left out of that length's mean.
    """
    count = token_counter(tokenizer)
    cells = []
    for task in tasks:
        for length in lengths:
            cell_depths = depths if task in DEPTH_TASKS else [None]
            n = samples if task in DEPTH_TASKS else samples * len(depths)
            for d_i, depth in enumerate(cell_depths):
                rng = random.Random(f"{seed}-{task}-{length}-{d_i}")
                try:
                    batch = [
                        build_sample(task, length, depth, rng, count, settings) for _ in range(n)
                    ]
                except ValueError:  # the task needs more tokens than `length` (cwe at 128)
                    continue
                preds = greedy_predictions(model, tokenizer, batch, batch_size)
                acc = string_match_all(preds, [s.answers for s in batch])
                cells.append({"task": task, "length": length, "depth": depth, "accuracy": acc})
    by = defaultdict(list)
    for c in cells:
        by[(c["task"], c["length"])].append(c["accuracy"])
    by_task_length = {f"{t}@{n}": float(np.mean(v)) for (t, n), v in by.items()}
    flat = {}
    for length in lengths:
        if "passkey" in tasks:
            flat[f"passkey@{length}"] = by_task_length[f"passkey@{length}"]
        ruler = [by_task_length[f"{t}@{length}"] for t in tasks
                 if t != "passkey" and f"{t}@{length}" in by_task_length]  # fmt: skip
        if ruler:
            flat[f"ruler@{length}"] = float(np.mean(ruler))
    return {"cells": cells, "by_task_length": by_task_length, **flat}


@no_grad
def sliding_window_nll(
    model, ids: np.ndarray, context: int, stride: int = 256, batch_size: int = 4
) -> float:
    """Mean next-token NLL (nats) of ``ids`` with a sliding context of ``context`` tokens.

    Window k covers tokens [e - context, e) with e = context + k * stride (the first window
    scores all its tokens, later ones only their last ``stride``), so every token after the
    first is scored once, with between context - stride and context tokens before it.
    """
    import torch
    import torch.nn.functional as F

    if len(ids) < context + 1:
        raise ValueError(f"{len(ids)} evaluation tokens; a context of {context} needs more")
    model.eval()
    device = next(model.parameters()).device
    windows = []  # (start, first scored target index within the window)
    end, step = context, context - 1
    while True:
        windows.append((end - context, context - step))  # scores the last `step` targets
        if end >= len(ids):
            break
        step = min(stride, len(ids) - end)
        end += step
    total, count = 0.0, 0
    for b in range(0, len(windows), batch_size):
        chunk = windows[b : b + batch_size]
        x = torch.stack([torch.from_numpy(ids[s : s + context].astype(np.int64)) for s, _ in chunk])
        logits = model(input_ids=x.to(device)).logits.float()
        logp = F.log_softmax(logits[:, :-1], -1)  # position t predicts t + 1
        nll = -logp.gather(-1, x[:, 1:, None].to(device))[..., 0]  # (b, context - 1)
        for row, (_, first) in enumerate(chunk):
            total += float(nll[row, first - 1 :].double().sum())
            count += context - first
    return total / count


def perplexities(
    model, tokenizer, contexts=(256, 512, 1024, 2048), short=128, tokens=4096, stride=256
) -> dict:
    """``ppl@L`` sliding-window perplexity for each context L, ``ppl_short@128`` in disjoint
    blocks of ``short`` tokens, on the same ``tokens`` held-out prose tokens."""
    ids = prose_eval_ids(tokenizer, tokens)
    out = {f"ppl@{c}": math.exp(sliding_window_nll(model, ids, c, stride)) for c in contexts}
    out[f"ppl_short@{short}"] = math.exp(sliding_window_nll(model, ids, short, short))
    return out


@no_grad
def induction_accuracy(model, tokenizer, period: int = 30, samples: int = 32, seed: int = 99):
    """Accuracy of the argmax prediction of each token of the second copy of ``period`` random
    ids (:func:`repro_harpe.corpus.copy_ids`, a seed training never uses) repeated once; the
    first token of the second copy is not scored (nothing identifies where the repeat starts)."""
    import torch

    from .corpus import copy_ids

    ids = copy_ids(tokenizer)
    rng = np.random.default_rng(seed)
    unit = ids[rng.integers(0, len(ids), size=(samples, period))]
    x = torch.from_numpy(np.concatenate([unit, unit], axis=1)).to(next(model.parameters()).device)
    pred = model(input_ids=x).logits.argmax(-1)  # pred[:, t] predicts x[:, t + 1]
    hit = pred[:, period : 2 * period - 1] == x[:, period + 1 :]
    return float(hit.double().mean())


def evaluate_model(
    model, tokenizer, lengths, depths, samples, contexts, short=128, tokens=4096, tasks=TASKS
) -> dict:
    """:func:`retrieval_accuracy`, :func:`perplexities` and ``induction``
    (:func:`induction_accuracy`) in one dict."""
    model.eval()
    result = retrieval_accuracy(model, tokenizer, lengths, depths, samples, tasks)
    result.update(perplexities(model, tokenizer, contexts, short, tokens))
    result["induction"] = induction_accuracy(model, tokenizer)
    return result


def _numbers(flag: str, text: str, kind=int) -> list:
    """``--flag 1,2,3`` as numbers, or a :class:`UserError` naming the flag."""
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated numbers") from None


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-harpe-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a saved model directory (run_dir/final)")
    p.add_argument("--lengths", default="128,256,512,1024,2048")
    p.add_argument("--depths", default="0,0.5,1")
    p.add_argument("--samples", type=int, default=4, help="samples per (task, length, depth)")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--contexts", default="256,512,1024,2048", help="sliding-window ppl contexts")
    p.add_argument("--short", type=int, default=128, help="short-context ppl block length")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    # checks first (no torch)
    if not (Path(args.model) / "config.json").is_file():
        raise MissingInputError(
            f"--model {args.model}: no model there (no config.json); pass a run's final/ folder"
        )
    lengths = _numbers("--lengths", args.lengths)
    depths = _numbers("--depths", args.depths, float)
    contexts = _numbers("--contexts", args.contexts)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise UserError(f"--tasks: unknown task(s) {unknown}; allowed: {','.join(TASKS)}")
    if any(not 0 <= d <= 1 for d in depths) or args.samples < 1 or args.short < 2:
        raise UserError("--depths must lie in [0, 1], --samples >= 1 and --short >= 2")
    # the heavy stack from here on
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import modeling  # noqa: F401  (registers HarpeForCausalLM)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    result = evaluate_model(
        model, tok, lengths, depths, args.samples, contexts, args.short, tasks=tasks
    )
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
