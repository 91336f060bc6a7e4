"""Tokenizer statistics of the Scaffold-BPE comparison (paper Tables 6 and 8, Figure 5).

One measurement trains plain BPE and Scaffold-BPE with the same trainer, pre-tokeniser and
tie-breaks on a seeded 90% sample of the corpus's training lines (the seed is what varies between
replicates: which lines the tokenizer saw), and measures on the held-out split the bytes per
token, and on the sample's own encoding the entropy H of the token distribution, the redundancy
R = 1 - H / log2 N, the scaffold fraction and the mean frequency of the tokens Scaffold-BPE holds
in place of the BPE tokens it drops.
"""

from __future__ import annotations

import math
import time

import numpy as np

SAMPLE_FRACTION = 0.9


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of the token distribution given by occurrence counts."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def token_counts(model, lines: list[str]) -> np.ndarray:
    """Occurrences of every token id in the encoding of ``lines``."""
    ids = model.encoder().encode_batch(lines)
    flat = np.concatenate([np.asarray(seq, dtype=np.int64) for seq in ids if len(seq)])
    return np.bincount(flat, minlength=model.vocab_size)


def tokenizer_stats(model, counts: np.ndarray, heldout_lines: list[str]) -> dict:
    """Compression and frequency statistics of one trained ``ScaffoldBpe``."""
    heldout_bytes = sum(len(t.encode("utf-8")) for t in heldout_lines)
    start = time.perf_counter()
    heldout_tokens = sum(len(ids) for ids in model.encoder().encode_batch(heldout_lines))
    seconds = time.perf_counter() - start
    n = model.vocab_size
    h = entropy_bits(counts)
    return {
        "vocab_size": n,
        "expanded_vocab_size": model.expanded_vocab_size,
        "scaffold_fraction": len(model.scaffold_ids) / n,
        "heldout_bytes_per_token": heldout_bytes / heldout_tokens,
        "heldout_encode_mb_per_s": heldout_bytes / 1e6 / max(seconds, 1e-9),
        "entropy_bits": h,
        "redundancy": 1 - h / math.log2(n),
        "rare_fraction": float((counts < 10).mean()),
    }


def replacement_gain(bpe, sbpe, bpe_counts: np.ndarray, sbpe_counts: np.ndarray) -> dict:
    """Paper Fig. 5: mean frequency of the BPE(N) tokens Scaffold-BPE(N) does not keep (in the
    BPE encoding) vs the tokens it holds in their place (in its own encoding), matched by bytes."""
    bpe_by_bytes = {b: i for i, b in enumerate(bpe.model_token_bytes)}
    sbpe_by_bytes = {b: i for i, b in enumerate(sbpe.model_token_bytes)}
    removed = [i for b, i in bpe_by_bytes.items() if b not in sbpe_by_bytes]
    added = [i for b, i in sbpe_by_bytes.items() if b not in bpe_by_bytes]
    if not removed:
        return {"num_replaced": 0, "replacement_frequency_gain": 0.0}
    gain = float(np.mean(sbpe_counts[added])) / float(np.mean(bpe_counts[removed])) - 1
    return {"num_replaced": len(removed), "replacement_frequency_gain": gain}


def measure(corpus, size: int, seed: int, method: str, pattern: str = "gpt2") -> dict:
    """Train BPE (and Scaffold-BPE for ``method="scaffold"``) of ``size`` on the seeded sample
    of ``corpus``'s training lines; statistics of the ``method`` tokenizer. Plain BPE replaces
    nothing, so its replacement gain is 0 by definition (the constant baseline of Figure 5)."""
    from repro_core.bpe import ENDOFTEXT, PreTokenizer, count_pieces, train_bpe
    from repro_core.data import load_split_texts

    from .cli import PATTERNS
    from .scaffold import plain_bpe_as_scaffold, train_scaffold_bpe

    lines = load_split_texts(corpus, "train")
    heldout = load_split_texts(corpus, "validation")
    keep = np.random.default_rng(seed).random(len(lines)) < SAMPLE_FRACTION
    sample = [t for t, k in zip(lines, keep) if k]
    pretok = PreTokenizer(PATTERNS[pattern], [ENDOFTEXT])
    counts = count_pieces(sample, pretok)
    bpe = plain_bpe_as_scaffold(train_bpe(counts, size, pretok))
    bpe_counts = token_counts(bpe, sample)
    if method == "bpe":
        return tokenizer_stats(bpe, bpe_counts, heldout) | {"replacement_frequency_gain": 0.0}
    sbpe = train_scaffold_bpe(counts, size, pretok)
    sbpe_counts = token_counts(sbpe, sample)
    return tokenizer_stats(sbpe, sbpe_counts, heldout) | replacement_gain(
        bpe, sbpe, bpe_counts, sbpe_counts
    )
