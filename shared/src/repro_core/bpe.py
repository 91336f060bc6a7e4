"""Byte-level BPE: pre-tokenisation, piece counting, an incremental trainer, and encoding.

Shared by the tokenizer papers (Scaffold-BPE, LBPE). Conventions (those of the golden data in
`$REPRO_DATA_DIR/reference/bpe/`):

* ids 0..255 are the bytes with that value, then the special tokens, then merged tokens in creation
  order; the merge list is in rank order (earlier = higher priority);
* pre-tokenisation splits the special tokens out first (atomic, never merged), then applies a regex
  (GPT-2's by default) to the rest; merges never cross pieces;
* training pops the pair with the highest count (overlapping occurrences counted, like HF
  `tokenizers`), ties to the smallest (left, right) id pair in a chosen byte order ("reference":
  raw byte values; "hf": the order of HF `ByteLevel`, which makes our merges equal to `BpeTrainer`'s);
  a merge replaces the non-overlapping occurrences left to right; a merge whose bytes already exist as
  a token reuses that id (HF semantics; the vocabulary does not grow);
* encoding: "merges" = HF semantics (lowest-rank merge rule first, leftmost on ties), "token_rank" =
  tiktoken semantics (merge the adjacent pair whose concatenation is the lowest-id token).

Typical use::

    pretok = PreTokenizer()                                   # GPT-2 regex, <|endoftext|>
    counts = count_pieces(texts, pretok)                      # {piece: occurrences}
    vocab = train_bpe(counts, vocab_size=8192, pretokenizer=pretok)
    enc = vocab.encoder()
    ids = enc.encode("Hello world<|endoftext|>")
    assert enc.decode(ids) == "Hello world<|endoftext|>"

Extension point for training variants (Scaffold-BPE): `BpeTrainer` is resumable and yields every
merge with its pair count and applied count (`next_merges`), and exposes the current token
frequencies, so a variant can run its own bookkeeping on the merge stream without re-implementing
the trainer. Encoding variants pass an `expansion` table to `BpeEncoder` (e.g. demolition of scaffold
tokens into compact model ids).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import regex

from repro_core import _bpe_kernels as K

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""GPT-2 pre-tokenisation regex (the golden data's, and HF `ByteLevel`'s)."""

GPT2_SPLIT_DIGITS_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
"""GPT-2 regex with every digit its own piece (LLaMA-style, as in the Scaffold-BPE paper)."""

ENDOFTEXT = "<|endoftext|>"
BYTE_ORDERS = ("reference", "hf")
SEMANTICS = ("merges", "token_rank")
FORMAT_VERSION = 1


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def piece_to_bytes(piece: str) -> bytes:
    """UTF-8 bytes of a piece; lone surrogates from `surrogateescape` decoding map back to raw bytes."""
    try:
        return piece.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return piece.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return piece.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------------------------------
# pre-tokenisation and counting
# ------------------------------------------------------------------------------------------------


class PreTokenizer:
    """Splits text into special tokens and regex pieces.

    Args:
        pattern: the piece regex (`regex` module syntax); `GPT2_PATTERN` by default.
        special_tokens: strings that are split out first and never merged; longest match first.
    """

    def __init__(
        self, pattern: str = GPT2_PATTERN, special_tokens: Sequence[str] = (ENDOFTEXT,)
    ) -> None:
        if len(set(special_tokens)) != len(special_tokens) or any(not s for s in special_tokens):
            raise ValueError(
                f"special_tokens must be distinct non-empty strings, got {special_tokens!r}"
            )
        self.pattern = pattern
        self.special_tokens = tuple(special_tokens)
        self._piece_re = regex.compile(pattern)
        self.findall = self._piece_re.findall
        ordered = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = (
            re.compile("(" + "|".join(re.escape(s) for s in ordered) + ")") if ordered else None
        )

    def split_special(self, text: str) -> list[str]:
        """[text, special, text, special, ..., text]: odd positions are special tokens."""
        if self._special_re is None:
            return [text]
        return self._special_re.split(text)

    def pieces(self, text: str) -> list[str]:
        """Regex pieces of `text`; special tokens act as boundaries and are dropped."""
        chunks = self.split_special(text)
        if len(chunks) == 1:
            return self.findall(text)
        return list(chain.from_iterable(self.findall(c) for c in chunks[::2]))

    def __repr__(self) -> str:
        return f"PreTokenizer(pattern={self.pattern!r}, special_tokens={self.special_tokens!r})"


def count_pieces(texts: Iterable[str] | str, pretokenizer: PreTokenizer | None = None) -> Counter:
    """Occurrences of each pre-token piece (str) over `texts` (special tokens are not counted)."""
    pretokenizer = pretokenizer or PreTokenizer()
    if isinstance(texts, str):
        texts = [texts]
    counts: Counter = Counter()
    for text in texts:
        for i, chunk in enumerate(pretokenizer.split_special(text)):
            if i % 2 == 0 and chunk:
                counts.update(pretokenizer.findall(chunk))
    return counts


def _byte_order_permutation(byte_order: str) -> np.ndarray:
    """perm[b] = position of byte b in the tie-break order."""
    if byte_order == "reference":
        return np.arange(256, dtype=np.int32)
    if byte_order == "hf":
        # HF BpeTrainer numbers the ByteLevel alphabet by the code point of each byte's character.
        mapping = bytes_to_unicode()
        order = sorted(range(256), key=lambda b: ord(mapping[b]))
        perm = np.empty(256, dtype=np.int32)
        perm[order] = np.arange(256, dtype=np.int32)
        return perm
    raise ValueError(f"byte_order must be one of {BYTE_ORDERS}, got {byte_order!r}")


# ------------------------------------------------------------------------------------------------
# trainer
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeRecords:
    """A chunk of merges in order. All arrays have one entry per merge.

    left, right, new_id: the merge (left, right) -> new_id; new_id is an existing id when the bytes
        already were a token (duplicate merge). pair_count: the popped priority (adjacent occurrences
        weighted by piece counts, overlaps included). applied_count: non-overlapping occurrences
        actually replaced (= how much the frequency of new_id grew and of left and right shrank).
    """

    left: np.ndarray
    right: np.ndarray
    new_id: np.ndarray
    pair_count: np.ndarray
    applied_count: np.ndarray

    def __len__(self) -> int:
        return int(self.left.size)


class BpeTrainer:
    """Resumable incremental byte-level BPE trainer (numba kernels, no recount per merge).

    Args:
        piece_counts: {piece (str or bytes): occurrences}, e.g. from `count_pieces`.
        num_special_tokens: ids 256 .. 256+k-1 are reserved for special tokens.
        byte_order: tie-break order of the byte ids, "reference" or "hf" (see module docstring).
        min_pair_count: stop when the best pair occurs fewer times.

    `next_merges(k)` runs up to k more merges and returns them; `token_frequencies()` are the
    current frequencies of all tokens in the merged corpus.
    """

    def __init__(
        self,
        piece_counts: Mapping[str, int] | Mapping[bytes, int],
        num_special_tokens: int = 1,
        byte_order: str = "reference",
        min_pair_count: int = 1,
    ) -> None:
        if num_special_tokens < 0:
            raise ValueError(f"num_special_tokens must be >= 0, got {num_special_tokens}")
        if min_pair_count < 1:
            raise ValueError(f"min_pair_count must be >= 1, got {min_pair_count}")
        self.byte_order = byte_order
        self._perm = _byte_order_permutation(byte_order)
        self._inverse = np.argsort(self._perm).astype(np.int32)
        self.num_base_tokens = 256 + num_special_tokens
        self.min_pair_count = int(min_pair_count)
        pieces = [p if isinstance(p, bytes) else piece_to_bytes(p) for p in piece_counts]
        counts = np.fromiter(
            (int(c) for c in piece_counts.values()), dtype=np.int64, count=len(pieces)
        )
        if counts.size and counts.min() < 0:
            raise ValueError("piece counts must be non-negative")
        keep = [i for i, p in enumerate(pieces) if p and counts[i] > 0]
        pieces = [pieces[i] for i in keep]
        counts = counts[keep] if keep else np.zeros(0, dtype=np.int64)
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        word_start = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=word_start[1:])
        raw = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        n_sym = int(raw.size)
        n_pairs = max(0, n_sym - len(pieces))
        self._sym = self._perm[raw].astype(np.int32)
        self._word_count = counts
        self._nxt = np.empty(n_sym, dtype=np.int32)
        self._prv = np.empty(n_sym, dtype=np.int32)
        self._word_of = np.empty(n_sym, dtype=np.int32)
        cap_slots = n_pairs + n_pairs // 2 + 1024
        bits = max(10, int(2 * cap_slots - 1).bit_length())
        self._pkeys = np.full(1 << bits, -1, dtype=np.int64)
        self._pvals = np.full(1 << bits, -1, dtype=np.int32)
        self._slot_a = np.empty(cap_slots, dtype=np.int32)
        self._slot_b = np.empty(cap_slots, dtype=np.int32)
        self._slot_cnt = np.zeros(cap_slots, dtype=np.int64)
        self._slot_head = np.empty(cap_slots, dtype=np.int32)
        self._slot_mark = np.empty(cap_slots, dtype=np.int64)
        self._occ_pos = np.empty(cap_slots, dtype=np.int32)
        self._occ_next = np.empty(cap_slots, dtype=np.int32)
        cap_heap = n_pairs + n_sym + 1024
        self._h_cnt = np.empty(cap_heap, dtype=np.int64)
        self._h_key = np.empty(cap_heap, dtype=np.int64)
        self._h_slot = np.empty(cap_heap, dtype=np.int32)
        # every merge replaces >= 1 symbol, so there are at most n_pairs merges (and new tokens)
        cap_tokens = self.num_base_tokens + n_pairs + 1
        self._tok_left = np.empty(cap_tokens, dtype=np.int32)
        self._tok_right = np.empty(cap_tokens, dtype=np.int32)
        self._tok_len = np.zeros(cap_tokens, dtype=np.int64)
        self._tok_hash = np.zeros(cap_tokens, dtype=np.uint64)
        self._tok_pow = np.zeros(cap_tokens, dtype=np.uint64)
        self._tok_freq = np.zeros(cap_tokens, dtype=np.int64)
        tbits = max(10, int(2 * cap_tokens - 1).bit_length())
        self._tvals = np.full(1 << tbits, -1, dtype=np.int32)
        self._sc = np.zeros(K.SC_SIZE, dtype=np.int64)
        self._sc[K.SC_PAIR_SHIFT] = 64 - bits
        self._sc[K.SC_TOKEN_SHIFT] = 64 - tbits
        self._positions = np.empty(n_sym + 1, dtype=np.int32)
        self._touched = np.empty(4096, dtype=np.int32)
        self.exhausted = False
        K.train_init(
            self._sym, word_start, self._word_count, self.num_base_tokens,
            self._nxt, self._prv, self._word_of, self._pkeys, self._pvals,
            self._slot_a, self._slot_b, self._slot_cnt, self._slot_head, self._slot_mark,
            self._occ_pos, self._occ_next, self._h_cnt, self._h_key, self._h_slot,
            self._tok_left, self._tok_right, self._tok_len, self._tok_hash, self._tok_pow,
            self._tok_freq, self._tvals, self._sc,
        )  # fmt: skip

    @property
    def num_tokens(self) -> int:
        """Bytes + special tokens + distinct merged tokens so far."""
        return int(self._sc[K.SC_N_TOKENS])

    @property
    def num_merges(self) -> int:
        return int(self._sc[K.SC_N_MERGES])

    def token_frequencies(self) -> np.ndarray:
        """int64 (num_tokens,): occurrences of every token id in the corpus merged so far."""
        freq = self._tok_freq[: self.num_tokens].copy()
        freq[:256] = self._tok_freq[self._perm]
        return freq

    def _to_ids(self, internal: np.ndarray) -> np.ndarray:
        out = internal.astype(np.int64)
        is_byte = out < 256
        out[is_byte] = self._inverse[out[is_byte]]
        return out

    def _grow(self, need: int) -> None:
        sc = self._sc

        def grown(arr: np.ndarray, size: int, fill=None) -> np.ndarray:
            new = (
                np.empty(size, dtype=arr.dtype) if fill is None else np.full(size, fill, arr.dtype)
            )
            new[: arr.size] = arr
            return new

        n_occ, n_slots, heap = int(sc[K.SC_N_OCC]), int(sc[K.SC_N_SLOTS]), int(sc[K.SC_HEAP_SIZE])
        if n_occ + 2 * need > self._occ_pos.size:
            size = max(2 * self._occ_pos.size, n_occ + 2 * need)
            self._occ_pos = grown(self._occ_pos, size)
            self._occ_next = grown(self._occ_next, size)
        if n_slots + 2 * need > self._slot_a.size:
            size = max(2 * self._slot_a.size, n_slots + 2 * need)
            self._slot_a = grown(self._slot_a, size)
            self._slot_b = grown(self._slot_b, size)
            self._slot_cnt = grown(self._slot_cnt, size, 0)
            self._slot_head = grown(self._slot_head, size)
            self._slot_mark = grown(self._slot_mark, size)
        if 2 * (n_slots + 2 * need) > self._pkeys.size:
            bits = int(2 * (n_slots + 2 * need)).bit_length() + 1
            self._pkeys, self._pvals = K.rehash_pairs(self._slot_a, self._slot_b, n_slots, bits)
            sc[K.SC_PAIR_SHIFT] = 64 - bits
        if heap + 4 * need + 1 > self._h_cnt.size:
            size = max(2 * self._h_cnt.size, heap + 4 * need + 1)
            self._h_cnt = grown(self._h_cnt, size)
            self._h_key = grown(self._h_key, size)
            self._h_slot = grown(self._h_slot, size)
        if 4 * need + 1 > self._touched.size:
            self._touched = np.empty(max(2 * self._touched.size, 4 * need + 1), dtype=np.int32)

    def next_merges(self, max_merges: int) -> MergeRecords:
        """Run up to `max_merges` more merges (fewer when no pair is left: `exhausted` turns True)."""
        max_merges = max(0, int(max_merges))
        out = [
            np.empty(max_merges, dtype=t)
            for t in (np.int32, np.int32, np.int32, np.int64, np.int64)
        ]
        done = 0
        while done < max_merges and not self.exhausted:
            views = [o[done:] for o in out]
            produced, status = K.train_chunk(
                self._sym, self._nxt, self._prv, self._word_of, self._word_count,
                self._pkeys, self._pvals, self._slot_a, self._slot_b, self._slot_cnt,
                self._slot_head, self._slot_mark, self._occ_pos, self._occ_next,
                self._h_cnt, self._h_key, self._h_slot, self._tok_left, self._tok_right,
                self._tok_len, self._tok_hash, self._tok_pow, self._tok_freq, self._tvals, self._sc,
                self._positions, self._touched, max_merges - done, self.min_pair_count, *views,
            )  # fmt: skip
            done += produced
            if status == K.STATUS_EXHAUSTED:
                self.exhausted = True
            elif status == K.STATUS_GROW:
                self._grow(int(self._sc[K.SC_NEED]))
        left, right, new, pair_count, applied = (o[:done] for o in out)
        return MergeRecords(
            self._to_ids(left), self._to_ids(right), new.astype(np.int64), pair_count, applied
        )


# ------------------------------------------------------------------------------------------------
# vocabulary
# ------------------------------------------------------------------------------------------------


@dataclass
class BpeVocab:
    """A byte-level BPE vocabulary: merges in rank order plus special tokens and the regex.

    token_bytes[i] is the byte string of id i (a special token's is its UTF-8 text). merges[k] is
    (left, right, new_id) of rank k. `pair_counts` / `applied_counts` are training statistics
    (empty for a loaded vocabulary without them).
    """

    merges: list[tuple[int, int, int]]
    special_tokens: dict[str, int] = field(default_factory=lambda: {ENDOFTEXT: 256})
    pattern: str = GPT2_PATTERN
    pair_counts: list[int] = field(default_factory=list)
    applied_counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.merges = [(int(a), int(b), int(t)) for a, b, t in self.merges]
        n_special = len(self.special_tokens)
        if sorted(self.special_tokens.values()) != list(range(256, 256 + n_special)):
            raise ValueError(
                f"special token ids must be 256..{255 + n_special}, got {self.special_tokens}"
            )
        tokens = [bytes([b]) for b in range(256)] + [b""] * n_special
        for s, i in self.special_tokens.items():
            tokens[i] = s.encode("utf-8")
        special_ids = range(256, 256 + n_special)
        for k, (a, b, t) in enumerate(self.merges):
            known = 0 <= a < len(tokens) and 0 <= b < len(tokens)
            if not known or a in special_ids or b in special_ids:
                raise ValueError(f"merge {k} ({a}, {b}) -> {t} uses an unknown or special id")
            joined = tokens[a] + tokens[b]
            if t == len(tokens):
                tokens.append(joined)
            elif not (256 + n_special <= t < len(tokens) and tokens[t] == joined):
                raise ValueError(
                    f"merge {k} ({a}, {b}) -> {t}: ids must be new in order or a duplicate"
                )
        self.token_bytes: list[bytes] = tokens

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def pretokenizer(self) -> PreTokenizer:
        return PreTokenizer(self.pattern, sorted(self.special_tokens, key=self.special_tokens.get))

    def encoder(self, semantics: str = "merges", **kwargs) -> BpeEncoder:
        """A `BpeEncoder` over this vocabulary (see its docstring for kwargs)."""
        return BpeEncoder(
            self.token_bytes, self.merges, self.special_tokens, self.pattern, semantics, **kwargs
        )

    def to_dict(self) -> dict:
        return {
            "format": "repro-bpe",
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "merges": [list(m) for m in self.merges],
            "pair_counts": list(map(int, self.pair_counts)),
            "applied_counts": list(map(int, self.applied_counts)),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> BpeVocab:
        if data.get("format") != "repro-bpe":
            raise ValueError(f"not a repro-bpe vocabulary (format={data.get('format')!r})")
        return cls(
            merges=[tuple(m) for m in data["merges"]],
            special_tokens={str(k): int(v) for k, v in data["special_tokens"].items()},
            pattern=data["pattern"],
            pair_counts=list(data.get("pair_counts", [])),
            applied_counts=list(data.get("applied_counts", [])),
        )

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> BpeVocab:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def train_bpe(
    piece_counts: Mapping[str, int] | Mapping[bytes, int],
    vocab_size: int,
    pretokenizer: PreTokenizer | None = None,
    byte_order: str = "reference",
    min_pair_count: int = 1,
) -> BpeVocab:
    """Plain byte-level BPE to `vocab_size` ids (bytes + special tokens + merged tokens).

    Stops early (smaller vocabulary) when no pair with `min_pair_count` occurrences is left.
    """
    pretokenizer = pretokenizer or PreTokenizer()
    n_base = 256 + len(pretokenizer.special_tokens)
    if vocab_size < n_base:
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the {n_base} base ids "
            f"(256 bytes + {len(pretokenizer.special_tokens)} special tokens)"
        )
    trainer = BpeTrainer(piece_counts, len(pretokenizer.special_tokens), byte_order, min_pair_count)
    chunks = []
    while trainer.num_tokens < vocab_size and not trainer.exhausted:
        chunks.append(trainer.next_merges(vocab_size - trainer.num_tokens))  # <= 1 token per merge
    merges = [m for c in chunks for m in zip(c.left.tolist(), c.right.tolist(), c.new_id.tolist())]
    return BpeVocab(
        merges=merges,
        special_tokens={s: 256 + i for i, s in enumerate(pretokenizer.special_tokens)},
        pattern=pretokenizer.pattern,
        pair_counts=[x for c in chunks for x in c.pair_count.tolist()],
        applied_counts=[x for c in chunks for x in c.applied_count.tolist()],
    )


# ------------------------------------------------------------------------------------------------
# encoder
# ------------------------------------------------------------------------------------------------


class BpeEncoder:
    """Encodes text with a byte-level BPE vocabulary; a per-piece cache makes repeated pieces free.

    Args:
        token_bytes: id -> bytes for every id the BPE can produce.
        merges: (left, right, new_id) in rank order.
        special_tokens: {text: id}; split out before the regex.
        pattern: the piece regex.
        semantics: "merges" (HF `tokenizers`) or "token_rank" (tiktoken), see module docstring.
        expansion: optional, expansion[id] = tuple of output ids replacing `id` after BPE (e.g.
            Scaffold-BPE demolition into compact model ids). Identity when None.
        output_token_bytes: bytes of each output id, for decoding; `token_bytes` when None.
        max_cache_entries: the piece cache is cleared when it would grow beyond this.
    """

    def __init__(
        self,
        token_bytes: Sequence[bytes],
        merges: Sequence[tuple[int, int, int]],
        special_tokens: Mapping[str, int],
        pattern: str = GPT2_PATTERN,
        semantics: str = "merges",
        expansion: Sequence[Sequence[int]] | None = None,
        output_token_bytes: Sequence[bytes] | None = None,
        max_cache_entries: int = 1 << 18,
    ) -> None:
        if semantics not in SEMANTICS:
            raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
        self.semantics = semantics
        self.token_bytes = list(token_bytes)
        self.special_tokens = dict(special_tokens)
        self.pretokenizer = PreTokenizer(
            pattern, sorted(self.special_tokens, key=self.special_tokens.get)
        )
        self.max_cache_entries = int(max_cache_entries)
        n = len(self.token_bytes)
        if semantics == "merges":
            rows = np.asarray(merges, dtype=np.int64).reshape(-1, 3)
            left, right, new = rows[:, 0], rows[:, 1], rows[:, 2]
            rank = np.arange(rows.shape[0], dtype=np.int64)
        else:
            left, right, new = self._token_rank_rules()
            rank = new.astype(np.int64)
        bits = max(4, int(2 * max(1, left.size)).bit_length() + 1)
        self._pkeys, self._pvals = K.build_pair_table(
            left.astype(np.int32), right.astype(np.int32), bits
        )
        self._pshift = 64 - bits
        self._rank = np.ascontiguousarray(rank, dtype=np.int64)
        self._new = np.ascontiguousarray(new, dtype=np.int32)
        if expansion is None:
            expansion = [(i,) for i in range(n)]
        if len(expansion) != n:
            raise ValueError(f"expansion has {len(expansion)} entries for {n} token ids")
        self.expansion = [tuple(int(x) for x in e) for e in expansion]
        lengths = np.fromiter(map(len, self.expansion), dtype=np.int64, count=n)
        self._exp_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._exp_offsets[1:])
        self._exp_ids = np.fromiter(
            chain.from_iterable(self.expansion), dtype=np.int32, count=int(lengths.sum())
        )
        self.output_token_bytes = (
            list(output_token_bytes) if output_token_bytes is not None else self.token_bytes
        )
        self._special_out = {s: self.expansion[i] for s, i in self.special_tokens.items()}
        self._cache: dict[str, tuple[int, ...]] = {}

    def _token_rank_rules(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (x, y) whose bytes concatenate to a non-special token t, with t as the result."""
        specials = set(self.special_tokens.values())
        id_of: dict[bytes, int] = {}
        for i, tb in enumerate(self.token_bytes):
            if i not in specials:
                id_of.setdefault(tb, i)
        left, right, new = [], [], []
        for t, tb in enumerate(self.token_bytes):
            if t in specials or len(tb) < 2 or id_of.get(tb) != t:
                continue
            for k in range(1, len(tb)):
                x = id_of.get(tb[:k])
                if x is not None:
                    y = id_of.get(tb[k:])
                    if y is not None:
                        left.append(x)
                        right.append(y)
                        new.append(t)
        return (np.asarray(left, np.int64), np.asarray(right, np.int64), np.asarray(new, np.int64))

    # -- pieces ----------------------------------------------------------------------------------

    def encode_pieces_uncached(self, pieces: Sequence[str | bytes]) -> list[tuple[int, ...]]:
        """BPE + expansion of each piece, without the cache (one kernel call for all)."""
        raw = [p if isinstance(p, bytes) else piece_to_bytes(p) for p in pieces]
        offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, raw), dtype=np.int64, count=len(raw)), out=offsets[1:])
        data = np.frombuffer(b"".join(raw), dtype=np.uint8)
        ids, out_offsets = K.encode_pieces(
            data, offsets, self._pkeys, self._pvals, self._pshift, self._rank, self._new,
            self._exp_offsets, self._exp_ids,
        )  # fmt: skip
        flat = ids.tolist()
        bounds = out_offsets.tolist()
        return [tuple(flat[bounds[k] : bounds[k + 1]]) for k in range(len(raw))]

    def _fill_cache(self, pieces: list[str]) -> None:
        cache = self._cache
        missing = [p for p in dict.fromkeys(pieces) if p not in cache]
        if len(cache) + len(missing) > self.max_cache_entries:
            cache.clear()
            missing = list(dict.fromkeys(pieces))
        cache.update(zip(missing, self.encode_pieces_uncached(missing)))

    def _encode_chunk(self, text: str) -> list[tuple[int, ...]]:
        pieces = self.pretokenizer.findall(text)
        try:
            return list(map(self._cache.__getitem__, pieces))
        except KeyError:
            self._fill_cache(pieces)
            return list(map(self._cache.__getitem__, pieces))

    # -- public API ------------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text`, treating special-token strings as ordinary text."""
        return list(chain.from_iterable(self._encode_chunk(text)))

    def encode(self, text: str, allowed_special: bool = True) -> list[int]:
        """Ids of `text`; special-token strings become their ids unless `allowed_special=False`."""
        if not allowed_special:
            return self.encode_ordinary(text)
        chunks = self.pretokenizer.split_special(text)
        if len(chunks) == 1:
            return self.encode_ordinary(text)
        parts: list = []
        for i, chunk in enumerate(chunks):
            if i % 2:
                parts.append(self._special_out[chunk])
            elif chunk:
                parts.extend(self._encode_chunk(chunk))
        return list(chain.from_iterable(parts))

    def encode_batch(self, texts: Iterable[str], allowed_special: bool = True) -> list[list[int]]:
        return [self.encode(t, allowed_special) for t in texts]

    def encode_bytes(self, data: bytes, allowed_special: bool = True) -> list[int]:
        """Ids of arbitrary bytes (invalid UTF-8 survives: it is pre-tokenised as surrogate escapes)."""
        return self.encode(data.decode("utf-8", "surrogateescape"), allowed_special)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(map(self.output_token_bytes.__getitem__, ids))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        return self.decode_bytes(ids).decode("utf-8", errors)

    def clear_cache(self) -> None:
        self._cache.clear()


# ------------------------------------------------------------------------------------------------
# interoperability
# ------------------------------------------------------------------------------------------------


def to_hf_tokenizer(vocab: BpeVocab):
    """The same BPE as a HF `tokenizers.Tokenizer` (merge-rule semantics, ids kept).

    Used to cross-check our encoder and as the speed baseline. Pieces come from the same regex
    (`Split` + `ByteLevel(use_regex=False)`), so the two agree piece for piece.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    to_char = bytes_to_unicode()

    def as_str(b: bytes) -> str:
        return "".join(to_char[x] for x in b)

    specials = set(vocab.special_tokens.values())
    hf_vocab = dict(vocab.special_tokens)  # in the model vocab, so that AddedToken keeps the id
    for i, tb in enumerate(vocab.token_bytes):
        if i not in specials:
            hf_vocab.setdefault(as_str(tb), i)
    merges = [
        (as_str(vocab.token_bytes[a]), as_str(vocab.token_bytes[b])) for a, b, _ in vocab.merges
    ]
    tok = Tokenizer(models.BPE(vocab=hf_vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(vocab.pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken

    tok.add_special_tokens(
        [
            AddedToken(s, special=True, normalized=False)
            for s in sorted(vocab.special_tokens, key=vocab.special_tokens.get)
        ]
    )
    return tok
