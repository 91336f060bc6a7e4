"""LBPE (Lian et al., arXiv 2411.05504): long-token-first encoding over an ordinary BPE vocabulary.

Training and vocabulary are plain BPE's; only the order in which tokens are produced changes:
"LBPE generates tokens according to their reverse ranks of token length rather than their ranks
in the vocabulary" (abstract). The paper body was not available; the readings (spec sections 2.3
and L2.2) are switches:

* reading "b" (default, longest-token-first segmentation): inside each pre-token, occurrences of
  vocabulary tokens are placed longest first (length in bytes), each accepted if it overlaps no
  accepted one; uncovered bytes become byte tokens. Equal lengths (`tie`):
  - "leftmost" (default): the left-to-right sliding-window scan the summaries describe;
  - "rank": lower vocabulary rank first, then leftmost (the golden `lbpe_b`).
* reading "a": BPE's pairwise merge loop (one merge per step) whose priority is the length of the
  merged token (longest first), then lower rank, then leftmost; candidates are all adjacent pairs
  whose concatenation is a token (tiktoken-style);
* reading "a_rules": the same with only merge-rule pairs as candidates;
* reading "bpe": plain BPE (HF merge-rule semantics), the baseline with the same vocabulary and ids.

Pre-tokenisation, special tokens and the per-piece cache are the core encoder's
(`repro_core.bpe.BpeEncoder`); this class replaces the per-piece kernel.

    vocab = TokenVocabulary.from_bpe_vocab(train_bpe(counts, 4096))
    enc = LbpeEncoder(vocab)                                   # reading b, leftmost ties
    ids = enc.encode("Hello world<|endoftext|>")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from repro_core.bpe import BpeEncoder, piece_to_bytes

from repro_lbpe import _kernels as K
from repro_lbpe.vocab import TokenVocabulary

READINGS = ("b", "a", "a_rules", "bpe")
TIES = ("leftmost", "rank")


def _check(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


class LbpeEncoder(BpeEncoder):
    """Encodes text with LBPE over a `TokenVocabulary` (see the module docstring).

    Args:
        vocab: the vocabulary (internal ids in the core convention, output ids for the model).
        reading: "b" (default), "a", "a_rules" or "bpe".
        tie: equal-length rule of reading b, "leftmost" (default) or "rank".
        max_cache_entries: size bound of the per-piece cache.

    `encode`, `encode_ordinary`, `encode_batch`, `encode_bytes`, `decode` are the core encoder's;
    ids are output ids. Rank = internal id (merge order).
    """

    def __init__(
        self,
        vocab: TokenVocabulary,
        reading: str = "b",
        tie: str = "leftmost",
        max_cache_entries: int = 1 << 18,
    ) -> None:
        _check("reading", reading, READINGS)
        _check("tie", tie, TIES)
        if reading in ("a_rules", "bpe") and not vocab.merges:
            raise ValueError(
                f"reading={reading!r} needs merge rules, and this vocabulary has none "
                f"({vocab.source}); use reading 'b' or 'a'"
            )
        self.vocab = vocab
        self.reading = reading
        self.tie = tie
        super().__init__(
            vocab.token_bytes,
            vocab.merges,
            vocab.special_tokens,
            vocab.pattern,
            semantics="token_rank" if reading == "a" else "merges",
            expansion=vocab.expansion,
            output_token_bytes=vocab.output_token_bytes,
            max_cache_entries=max_cache_entries,
        )
        if reading in ("a", "a_rules"):  # the core's pair-heap kernel with length-first priorities
            self._rank = self._length_first_priority(self._new)
        self._build_trie()

    def _length_first_priority(self, new_ids: np.ndarray) -> np.ndarray:
        """Rule priority (lower first) = (longer merged token first, then lower rank)."""
        lengths = np.fromiter(
            map(len, self.token_bytes), dtype=np.int64, count=len(self.token_bytes)
        )
        n = len(self.token_bytes)
        prio = (lengths.max() - lengths[new_ids]) * n + new_ids
        if prio.size and prio.max() >= 1 << 31:
            raise ValueError("vocabulary too large for reading a's packed priorities (2^31)")
        return np.ascontiguousarray(prio, dtype=np.int64)

    def _build_trie(self) -> None:
        specials = set(self.special_tokens.values())
        ids = [i for i in range(len(self.token_bytes)) if i not in specials]
        raw = [self.token_bytes[i] for i in ids]
        offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, raw), dtype=np.int64, count=len(raw)), out=offsets[1:])
        data = np.frombuffer(b"".join(raw), dtype=np.uint8)
        bits = max(10, int(2 * data.size + 2).bit_length() + 1)
        self._edge_keys, self._edge_vals, self._node_token = K.build_trie(
            data, offsets, np.asarray(ids, dtype=np.int32), bits
        )
        self._trie_shift = 64 - bits
        self._byte_token = np.arange(256, dtype=np.int32)  # core convention: id b = byte b
        self._token_rank = np.arange(len(self.token_bytes), dtype=np.int64)
        self.max_token_len = int(max(map(len, raw)))

    def encode_pieces_uncached(self, pieces: Sequence[str | bytes]) -> list[tuple[int, ...]]:
        """Output ids of each piece, without the cache (one kernel call for all)."""
        if self.reading != "b":
            return super().encode_pieces_uncached(pieces)
        raw = [p if isinstance(p, bytes) else piece_to_bytes(p) for p in pieces]
        offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, raw), dtype=np.int64, count=len(raw)), out=offsets[1:])
        data = np.frombuffer(b"".join(raw), dtype=np.uint8)
        ids, out_offsets = K.lbpe_encode_pieces(
            data, offsets, self._edge_keys, self._edge_vals, self._trie_shift, self._node_token,
            self._byte_token, self._token_rank, self.tie == "rank", self.max_token_len,
            self._exp_offsets, self._exp_ids,
        )  # fmt: skip
        flat = ids.tolist()
        bounds = out_offsets.tolist()
        return [tuple(flat[bounds[k] : bounds[k + 1]]) for k in range(len(raw))]

    def __repr__(self) -> str:
        return (
            f"LbpeEncoder(reading={self.reading!r}, tie={self.tie!r}, "
            f"vocab_size={self.vocab.vocab_size}, source={self.vocab.source})"
        )
