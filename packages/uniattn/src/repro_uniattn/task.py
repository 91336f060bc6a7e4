"""A synthetic instruction -> response family for post-training at CPU scale (spec §4.1 c).

Every example is one line ``Instruction: <task> <arguments> Response: <answer>`` over a small
lexicon of common English words (so a wikitext-trained BPE encodes it in few tokens). Tasks:
copy, reverse, first/last word, sort, and key lookup in a small table; each needs attention to
specific earlier tokens, which is what unification can damage.

    python -m repro_uniattn.task --out runs/uniattn/data/synthetic-sft   # writes the corpus

The corpus folder holds ``train.txt`` and ``valid.txt`` (trainer input, one example per line)
and ``heldout.json`` (held-out ``{"prompt", "response"}`` JSON lines for :func:`evaluate_task`;
not a .jsonl, so the trainer does not read it as a split).
The data config name ``synthetic-sft`` is resolved to that folder (generated on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

from repro_core import no_grad
from repro_core.results import write_text_atomic

CORPUS_NAME = "synthetic-sft"
WORDS = (
    "the city river house water light music school world family paper story garden winter "
    "summer market forest island church bridge road train letter window doctor army king "
    "queen game color stone field ship money season station mountain village school night"
).split()
TASKS = ("copy", "reverse", "first", "last", "sort", "lookup")


def make_example(rng: random.Random) -> tuple[str, str]:
    """One (prompt, response) pair; the response starts with a space."""
    task = rng.choice(TASKS)
    words = rng.sample(WORDS, rng.randint(3, 6))
    if task == "lookup":
        keys = words[:4] if len(words) >= 4 else words
        values = rng.sample(WORDS, len(keys))
        table = " , ".join(f"{k} is {v}" for k, v in zip(keys, values))
        i = rng.randrange(len(keys))
        return f"Instruction: in the table {table} . what is {keys[i]} ? Response:", f" {values[i]}"
    prompt = f"Instruction: {task} the words {' '.join(words)} . Response:"
    answer = {
        "copy": words,
        "reverse": words[::-1],
        "first": words[:1],
        "last": words[-1:],
        "sort": sorted(words),
    }[task]
    return prompt, " " + " ".join(answer)


def write_corpus(
    out: str | Path, train: int = 20000, valid: int = 500, test: int = 256, seed: int = 1234
) -> Path:
    """Write train.txt / valid.txt / heldout.json into ``out`` (deterministic given ``seed``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    seen: set[str] = set()

    def draw(n):
        rows = []
        while len(rows) < n:
            prompt, response = make_example(rng)
            if prompt in seen:
                continue
            seen.add(prompt)
            rows.append((prompt, response))
        return rows

    test_rows, valid_rows, train_rows = draw(test), draw(valid), draw(train)
    # heldout.json last: its presence marks a complete corpus (resolve_task_corpus)
    write_text_atomic(out / "train.txt", "".join(f"{p}{r}\n" for p, r in train_rows))
    write_text_atomic(out / "valid.txt", "".join(f"{p}{r}\n" for p, r in valid_rows))
    write_text_atomic(
        out / "heldout.json",
        "".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in test_rows),
    )
    return out


def resolve_task_corpus(name: str) -> str:
    """``synthetic-sft`` -> its folder (written on first use); anything else unchanged."""
    if name != CORPUS_NAME:
        return name
    root = Path(os.environ.get("REPRO_RUNS_DIR", "runs")) / "uniattn" / "data" / CORPUS_NAME
    if not (root / "heldout.json").is_file():
        write_corpus(root)
    return str(root)


@no_grad
def evaluate_task(
    model, tokenizer, corpus: str, max_examples: int = 256, batch_size: int = 32
) -> dict:
    """Held-out response loss (nats/token) and exact match (every response token is the
    greedy argmax under teacher forcing) on ``heldout.json`` of the task corpus."""
    import torch

    path = Path(resolve_task_corpus(corpus)) / "heldout.json"
    rows = [json.loads(line) for line in path.read_text().splitlines()][:max_examples]
    model.eval()
    device = next(model.parameters()).device
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    total_loss, total_tokens, exact = 0.0, 0, 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs, spans = [], []
        for row in chunk:
            p = newline + tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            r = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
            seqs.append(p + r)
            spans.append((len(p), len(p) + len(r)))
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: causal attention never sees it
            ids[i, : len(s)] = torch.tensor(s)
        logits = model(input_ids=ids.to(device)).logits.float().cpu()
        logp = torch.log_softmax(logits, -1)
        for i, (a, b) in enumerate(spans):
            target = ids[i, a:b]
            pred = logp[i, a - 1 : b - 1]  # position t predicts token t + 1
            total_loss -= float(pred.gather(-1, target[:, None]).sum())
            total_tokens += b - a
            exact += bool((pred.argmax(-1) == target).all())
    model.train()
    return {
        "task_loss": total_loss / max(total_tokens, 1),
        "task_accuracy": exact / max(len(rows), 1),
        "task_examples": len(rows),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m repro_uniattn.task", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    print(write_corpus(args.out, train=args.train, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "CORPUS_NAME",
    "TASKS",
    "evaluate_task",
    "make_example",
    "resolve_task_corpus",
    "write_corpus",
]
