"""Tokenizer statistics of the LBPE paper's analysis (spec 5.2, L2.4): how often tokens of each
length occur, compression and the entropy of the token distribution.

Token length is counted in bytes and in characters; the character length of a token is the
number of UTF-8 lead bytes in it (a token may hold part of a multi-byte character), leading space
included (GPT-2 tokens carry it). Buckets are the paper's: 1-3, 7-9, 10-12, 13-15 characters, plus
4-6 and 16+ so that the shares sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BUCKETS = ((1, 3), (4, 6), (7, 9), (10, 12), (13, 15), (16, 1 << 30))


def bucket_name(lo: int, hi: int) -> str:
    return f"{lo}+" if hi >= 1 << 30 else f"{lo}-{hi}"


def char_length(token: bytes) -> int:
    """Characters that start in `token` (UTF-8 lead bytes: every byte not of the form 10xxxxxx)."""
    return sum((b & 0xC0) != 0x80 for b in token)


def token_lengths(token_bytes: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, chars) per output id."""
    n_bytes = np.fromiter(map(len, token_bytes), dtype=np.int64, count=len(token_bytes))
    n_chars = np.fromiter(map(char_length, token_bytes), dtype=np.int64, count=len(token_bytes))
    return n_bytes, n_chars


def length_shares(counts: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """Share of token occurrences whose length falls in each bucket (counts: per output id)."""
    total = max(int(counts.sum()), 1)
    return {
        bucket_name(lo, hi): float(counts[(lengths >= lo) & (lengths <= hi)].sum() / total)
        for lo, hi in BUCKETS
    }


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of the unigram distribution given by occurrence counts."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def encoding_stats(
    ids_per_text: Sequence[Sequence[int]],
    n_text_bytes: int,
    token_bytes: Sequence[bytes],
    special_ids: Sequence[int] = (),
) -> dict:
    """Statistics of an encoded text (special-token occurrences excluded from the shares).

    Returns bytes_per_token, tokens, entropy_bits, redundancy (1 - H / log2 |V|, paper Table 8
    of Scaffold-BPE), distinct tokens used, and the shares of occurrences per length bucket in
    chars (`share_chars`) and bytes (`share_bytes`), and the mean token length in bytes.
    """
    flat = np.fromiter((i for ids in ids_per_text for i in ids), dtype=np.int64)
    counts = np.bincount(flat, minlength=len(token_bytes)).astype(np.int64)
    n_tokens = int(counts.sum())
    counts_no_special = counts.copy()
    counts_no_special[list(special_ids)] = 0
    n_bytes, n_chars = token_lengths(token_bytes)
    h = entropy_bits(counts)
    return {
        "tokens": n_tokens,
        "bytes_per_token": n_text_bytes / max(n_tokens, 1),
        "entropy_bits": h,
        "redundancy": 1 - h / math.log2(len(token_bytes)),
        "distinct_tokens": int((counts > 0).sum()),
        "mean_token_bytes": float(
            (counts_no_special * n_bytes).sum() / max(counts_no_special.sum(), 1)
        ),
        "share_chars": length_shares(counts_no_special, n_chars),
        "share_bytes": length_shares(counts_no_special, n_bytes),
        "count_chars": {
            bucket_name(lo, hi): int(counts_no_special[(n_chars >= lo) & (n_chars <= hi)].sum())
            for lo, hi in BUCKETS
        },
    }


def long_share(stats: dict, unit: str = "chars") -> float:
    """Share of occurrences of tokens with 7-15 characters (the paper's long buckets)."""
    s = stats[f"share_{unit}"]
    return s["7-9"] + s["10-12"] + s["13-15"]
