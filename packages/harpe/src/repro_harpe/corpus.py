"""Synthetic training and evaluation text for the CPU reproduction (spec section 4.1).

* Prose: templated sentences over a small lexicon. A document draws its sentences from a pool
  of its own (8-16 sentences), so earlier context predicts later text and a longer context
  lowers the loss (what sliding-window perplexity measures).
* Retrieval snippets: the tasks of :mod:`repro_harpe.tasks` at random lengths and depths, so
  the retrieval skill exists at the base length and is trained at the target length.

Training data are fixed-length blocks with one document per block (:func:`training_blocks`):
a task instance of a random length at the end of the block, the rest prose (separated by eos),
so an instance is never cut by block packing. Copy blocks (:func:`copy_block`, our addition, not
the paper's: random token ids of a random period tiled over the block) teach the base the
induction (copy) mechanism that retrieval needs; see ``HarpeModelConfig.copy_steps``. The byte-level BPE tokenizer (default 320 ids,
nearly characters) is trained on a fixed sample of both kinds of text
(:func:`harpe_tokenizer`). Everything is deterministic given the seeds and cached under
``$REPRO_RUNS_DIR/harpe/data`` (default ``runs/harpe/data``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
from repro_core.results import write_text_atomic

from .tasks import DEFAULT_SETTINGS, TASKS, TaskSettings, build_sample

ADJECTIVES = "red old small happy quiet bright cold green tall soft dark brave".split()
NOUNS = "fox river king garden ship bird window farmer city song tree horse".split()
VERBS = "sees finds follows paints likes carries visits helps watches meets".split()

# Bumped whenever make_block changes what it builds, so cached blocks of an older builder are
# never reused.
BLOCKS_VERSION = 2


def prose_sentence(rng: random.Random) -> str:
    a, b = rng.sample(ADJECTIVES, 2)
    n1, n2 = rng.sample(NOUNS, 2)
    return f"The {a} {n1} {rng.choice(VERBS)} the {b} {n2}."


def prose_document(rng: random.Random, num_sentences: int) -> str:
    """``num_sentences`` sentences drawn from a pool of 8-16 of the document's own."""
    pool = [prose_sentence(rng) for _ in range(rng.randint(8, 16))]
    return " ".join(rng.choice(pool) for _ in range(num_sentences))


def data_root() -> Path:
    return Path(os.environ.get("REPRO_RUNS_DIR", "runs")) / "harpe" / "data"


def harpe_tokenizer(spec: str = "bpe:320"):
    """The package's tokenizer: ``spec`` trained on a fixed mix of prose and task text
    (written once to ``data_root()/tokenizer-text``); cached by the core."""
    from repro_core.data import get_tokenizer, resolve_corpus

    folder = data_root() / "tokenizer-text"
    path = folder / "train.jsonl"
    if not path.is_file():
        rng = random.Random(1234)
        texts = [prose_document(rng, rng.randint(5, 40)) for _ in range(400)]
        for i in range(400):
            task = TASKS[i % len(TASKS)]
            s = build_sample(task, rng.randint(400, 4000), rng.random(), rng, len)
            texts.append(s.prompt + s.target)
        write_text_atomic(path, "".join(json.dumps({"text": t}) + "\n" for t in texts))
    return get_tokenizer(spec, resolve_corpus(str(folder)))


def token_counter(tokenizer):
    """``count(text)`` = number of token ids of ``text`` without special tokens."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def _prose_ids(tokenizer, rng: random.Random, num_tokens: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < num_tokens:
        doc = prose_document(rng, max(4, num_tokens // 6))
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return ids[:num_tokens]


def copy_ids(tokenizer) -> np.ndarray:
    """Ids a copy block draws from: the whole vocabulary except the special tokens."""
    special = set(tokenizer.all_special_ids)
    return np.asarray([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)


def copy_block(
    seq_len: int, rng: random.Random, ids: np.ndarray, period: tuple[int, int] = (16, 64)
) -> np.ndarray:
    """``seq_len`` ids: ``p`` random ``ids`` (p uniform in ``period``) tiled to fill the block.

    Every token after the first ``p`` repeats the one ``p`` back, so it is predictable only by
    finding the earlier occurrence of the current token and copying its successor (induction).
    The period varies from block to block: with one fixed period a model learns "copy the token
    p back" from the positions alone, which does not transfer to retrieval (measured, README)."""
    lo, hi = period
    p = rng.randint(lo, min(hi, seq_len))
    unit = np.asarray(rng.choices(range(len(ids)), k=p))
    return ids[np.resize(unit, seq_len)]


def make_block(
    tokenizer,
    seq_len: int,
    rng: random.Random,
    task_fraction: float,
    min_task_tokens: int,
    settings: TaskSettings,
) -> np.ndarray:
    """One block of exactly ``seq_len`` ids: prose, or prose + eos + a task instance at the end."""
    count = token_counter(tokenizer)
    sample = None
    if rng.random() < task_fraction:
        task = rng.choice(TASKS)
        length = rng.randint(min(min_task_tokens, seq_len), seq_len)
        # A task whose fixed text does not fit the drawn length gets the whole block; before
        # this retry such blocks became prose, and at seq_len 128 with the 320-id tokenizer only
        # 8% of blocks (not task_fraction = 50%) held a task: NIAH and CWE almost never fitted.
        for n in dict.fromkeys((length, seq_len)):
            try:
                sample = build_sample(task, n, rng.random(), rng, count, settings)
                break
            except ValueError:  # too long for n tokens: the whole block next, else prose
                continue
    if sample is not None:
        ids = tokenizer(sample.prompt + sample.target, add_special_tokens=False)["input_ids"]
        ids = ids[-seq_len:]
        room = seq_len - len(ids)
        if room:
            ids = (_prose_ids(tokenizer, rng, room - 1) + [tokenizer.eos_token_id])[-room:] + ids
    else:
        ids = _prose_ids(tokenizer, rng, seq_len)
    return np.asarray(ids, dtype=np.int64)


def training_blocks(
    tokenizer,
    seq_len: int,
    num_blocks: int,
    seed: int,
    task_fraction: float = 0.5,
    min_task_tokens: int = 64,
    settings: TaskSettings = DEFAULT_SETTINGS,
    copy_fraction: float = 0.0,
    copy_period: tuple[int, int] = (16, 64),
) -> np.ndarray:
    """(num_blocks, seq_len) int64 blocks, cached on disk by their parameters: a share
    ``copy_fraction`` of copy blocks (:func:`copy_block`), the rest :func:`make_block`."""
    from repro_core.data import tokenizer_fingerprint

    key = json.dumps(
        [
            BLOCKS_VERSION,
            tokenizer_fingerprint(tokenizer),
            seq_len,
            num_blocks,
            seed,
            task_fraction,
            min_task_tokens,
            settings.__dict__,
            copy_fraction,
            list(copy_period),
        ],
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = data_root() / f"blocks-{seq_len}-{num_blocks}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    rng = random.Random(f"blocks-{seed}-{seq_len}")
    ids = copy_ids(tokenizer) if copy_fraction > 0 else None
    blocks = np.stack(
        [
            copy_block(seq_len, rng, ids, tuple(copy_period))
            if copy_fraction > 0 and (copy_fraction >= 1 or rng.random() < copy_fraction)
            else make_block(tokenizer, seq_len, rng, task_fraction, min_task_tokens, settings)
            for _ in range(num_blocks)
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, blocks)
    os.replace(tmp, path)
    return blocks


def prose_eval_ids(tokenizer, num_tokens: int, seed: int = 777) -> np.ndarray:
    """Held-out prose (a seed the training blocks never use) for perplexity, ``num_tokens`` ids
    of documents separated by eos."""
    return np.asarray(_prose_ids(tokenizer, random.Random(f"eval-{seed}"), num_tokens))


__all__ = [
    "copy_block",
    "copy_ids",
    "data_root",
    "harpe_tokenizer",
    "make_block",
    "prose_document",
    "prose_eval_ids",
    "token_counter",
    "training_blocks",
]
