"""Token frequencies of the training split and the rule that makes a token "frequent".

MaskMoE gives every vocabulary id a fixed set of visible experts whose size depends on how often
the id occurs in the training data (spec §2.3): 1 for infrequent ids, ``V_freq`` for frequent
ones. Which ids are frequent is not stated in any readable source, so the rule is a switch:

* ``top_fraction``: the ``threshold`` x vocab_size most frequent ids (e.g. 0.2 = top 20% of
  vocabulary types);
* ``min_count``: ids that occur at least ``threshold`` times;
* ``coverage``: the most frequent ids that together cover a ``threshold`` share of all
  training-token occurrences (the smallest such prefix).

Ranks break count ties by the smaller id, so the frequent set is a function of the counts alone.
Ids that never occur in the training split and special tokens (``special_ids``) are infrequent
unless ``special_tokens_frequent`` is set (specials are then ranked like any other id).

The counts are computed once per (corpus, tokenizer, val_fraction, max_train_tokens) from the
cached token memmap and stored as ``.npz`` (``counts``, ``special_ids``) under the data cache;
the model keeps them as a buffer (``token_counts``), so they are saved with every checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

FREQUENCY_RULES = ("top_fraction", "min_count", "coverage")


def count_tokens(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Occurrences of each id in ``tokens`` (any shape) -> (vocab_size,) int64."""
    flat = np.asarray(tokens).reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(
            f"token ids span [{flat.min()}, {flat.max()}], outside the vocabulary of {vocab_size}"
        )
    return np.bincount(flat, minlength=vocab_size).astype(np.int64)


def frequency_ranking(counts: np.ndarray) -> np.ndarray:
    """Ids ordered by descending count, ties by ascending id: (vocab,) int64."""
    counts = np.asarray(counts, dtype=np.int64)
    ids = np.arange(len(counts))
    return np.lexsort((ids, -counts)).astype(np.int64)


def frequent_tokens(
    counts: np.ndarray,
    rule: str,
    threshold: float,
    special_ids: np.ndarray | list[int] = (),
    special_tokens_frequent: bool = False,
) -> np.ndarray:
    """Which ids are frequent: (vocab,) bool, by ``rule`` and ``threshold`` (module docstring)."""
    counts = np.asarray(counts, dtype=np.int64)
    vocab = len(counts)
    eligible = counts > 0
    if not special_tokens_frequent:
        special = np.asarray(list(special_ids), dtype=np.int64)
        eligible[special[(special >= 0) & (special < vocab)]] = False
    order = frequency_ranking(counts)
    order = order[eligible[order]]  # eligible ids, most frequent first
    frequent = np.zeros(vocab, dtype=bool)
    if rule == "top_fraction":
        if not 0 <= threshold <= 1:
            raise ValueError(f"top_fraction threshold={threshold} must be in [0, 1]")
        frequent[order[: int(round(threshold * vocab))]] = True
    elif rule == "min_count":
        if threshold < 1:
            raise ValueError(f"min_count threshold={threshold} must be >= 1")
        frequent[order[counts[order] >= threshold]] = True
    elif rule == "coverage":
        if not 0 <= threshold <= 1:
            raise ValueError(f"coverage threshold={threshold} must be in [0, 1]")
        total = counts.sum()
        covered = np.cumsum(counts[order]) / max(total, 1)
        n = int(np.searchsorted(covered, threshold - 1e-12)) + 1 if threshold > 0 else 0
        frequent[order[: min(n, len(order))]] = True
    else:
        raise ValueError(f"frequency rule {rule!r}; allowed: {FREQUENCY_RULES}")
    return frequent


def frequency_buckets(counts: np.ndarray, edges: tuple[float, ...] = (0.05, 0.20)) -> np.ndarray:
    """Bucket of each id by its rank: 0 = the top ``edges[0]`` fraction of vocabulary types,
    1 = up to ``edges[1]``, ..., last = the rest (rare, including unseen ids). (vocab,) int64."""
    vocab = len(counts)
    rank = np.empty(vocab, dtype=np.int64)
    rank[frequency_ranking(counts)] = np.arange(vocab)
    bounds = np.array([int(round(e * vocab)) for e in edges])
    return np.searchsorted(bounds, rank, side="right").astype(np.int64)


# ----------------------------------------------------------------------------------------------
# The counts of a run's training split, cached as a file


def training_token_counts_file(data_cfg, tokenizer) -> Path:
    """Count the ids of the training split of ``data_cfg`` (as the Trainer uses it: the cached
    tokenization, truncated to ``max_train_tokens``) once; returns the ``.npz`` path."""
    from repro_core.data import cache_dir, resolve_corpus, tokenize_corpus, tokenizer_fingerprint

    corpus = resolve_corpus(data_cfg.corpus)
    key = "|".join(
        [
            corpus.fingerprint(),
            tokenizer_fingerprint(tokenizer),
            str(data_cfg.val_fraction),
            str(data_cfg.max_train_tokens),
        ]
    )
    path = cache_dir() / "token_counts" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        return path
    tokens = tokenize_corpus(corpus, tokenizer, data_cfg.val_fraction)["train"].tokens
    if data_cfg.max_train_tokens:
        tokens = tokens[: data_cfg.max_train_tokens]
    counts = count_tokens(tokens, len(tokenizer))
    special = np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    np.savez(tmp, counts=counts, special_ids=special)
    os.replace(tmp, path)
    return path


def load_token_counts(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (vocab,), special_ids (n,))`` from a file of :func:`training_token_counts_file`."""
    with np.load(path) as data:
        return data["counts"].astype(np.int64), data["special_ids"].astype(np.int64)


__all__ = [
    "FREQUENCY_RULES",
    "count_tokens",
    "frequency_buckets",
    "frequency_ranking",
    "frequent_tokens",
    "load_token_counts",
    "training_token_counts_file",
]
