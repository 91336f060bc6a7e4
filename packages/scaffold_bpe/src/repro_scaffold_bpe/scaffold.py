"""Scaffold-BPE (Lian et al., AAAI-25, arXiv 2404.17808): training (Algorithm 1) and encoding (Algorithm 2).

Training is plain BPE plus frequency bookkeeping. After merging (a, b) -> t with `applied` replaced
occurrences, f(t) += applied and f(a), f(b) -= applied (Alg. 1 l.16-17). A child whose frequency
falls below the frequency of the queue head, f(c) < f(Q_head), becomes a *scaffold* token (l.18-20):
it leaves the vocabulary V but stays in the expanded vocabulary E and is queued with priority f(c).
When a scaffold token reaches the head of the queue it is re-activated without a merge (l.7-9). The
loop runs while |V| < N. Marking never changes the corpus, so the merge sequence is plain BPE's,
continued to |E| tokens: we consume the merge stream of `repro_core.bpe.BpeTrainer` and run the
scaffold queue next to it (the pair queue's head priority is the pair count of the next merge).

Conventions (spec section 1.4; those of the golden data, "reference"):
* queue = pairs with count > 0 and scaffold tokens with f > 0; at equal priority a scaffold token
  beats a pair, among tokens the smaller id first; pair ties go to the smaller (left, right);
* f(Q_head) is read after all updates of the iteration, once for both children;
* bytes and special tokens are pinned (never marked);
* if a == b the frequency drops by 2 * applied;
* duplicate merge (bytes of a + b already a token t, never seen in the golden cases): the merge is
  applied like in HF (t's frequency grows); if t was a scaffold token it is re-activated (l.7-9).
  The paper-literal variant would skip applying the merge; see the package README.

Encoding: BPE over all of E (scaffold tokens usable), then each scaffold token is replaced by its
demolition, the recursive split along the merge that created it until only normal tokens remain
(Alg. 2 l.13; precomputed, O(1) per token). The model sees compact ids 0..N-1 over V.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from repro_core.bpe import (
    ENDOFTEXT,
    GPT2_PATTERN,
    BpeEncoder,
    BpeTrainer,
    BpeVocab,
    PreTokenizer,
)

FORMAT = "repro-scaffold-bpe"
FORMAT_VERSION = 1


@dataclass
class ScaffoldBpe:
    """A trained Scaffold-BPE tokenizer model.

    merges: (left, right, new_id) of the expanded vocabulary E in rank order (E-ids: 0..255 bytes,
        then the special tokens, then merged tokens in creation order).
    scaffold_ids: the E-ids of the scaffold tokens S (never emitted by the encoder).
    events / history / pair_counts / applied_counts: the training log (may be empty when loaded).
        events: ["mark", id, f, q] | ["reactivate", id, f] | ["duplicate_merge", id, left, right];
        history: (kind, id, priority) of every popped queue item, kind "merge" or "reactivate".
    """

    merges: list[tuple[int, int, int]]
    scaffold_ids: list[int]
    special_tokens: dict[str, int] = field(default_factory=lambda: {ENDOFTEXT: 256})
    pattern: str = GPT2_PATTERN
    events: list[list] = field(default_factory=list)
    history: list[tuple[str, int, int]] = field(default_factory=list)
    pair_counts: list[int] = field(default_factory=list)
    applied_counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.expanded = BpeVocab(self.merges, self.special_tokens, self.pattern)
        self.merges = self.expanded.merges
        self.scaffold_ids = sorted(int(s) for s in self.scaffold_ids)
        n_base = 256 + len(self.special_tokens)
        bad = [s for s in self.scaffold_ids if not n_base <= s < self.expanded.vocab_size]
        if bad:
            raise ValueError(f"scaffold ids {bad} are pinned (bytes/special) or out of range")
        scaffold = set(self.scaffold_ids)
        self.normal_ids: list[int] = [
            i for i in range(self.expanded.vocab_size) if i not in scaffold
        ]
        self.model_id_of: dict[int, int] = {e: m for m, e in enumerate(self.normal_ids)}
        self.demolish: dict[int, tuple[int, ...]] = _demolition_table(self.expanded, scaffold)

    # -- sizes and tables ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """N = |V|, the number of normal tokens (bytes and special tokens included)."""
        return len(self.normal_ids)

    @property
    def expanded_vocab_size(self) -> int:
        """|E| = N + |S|."""
        return self.expanded.vocab_size

    @property
    def token_bytes(self) -> list[bytes]:
        """Bytes of every E-id."""
        return self.expanded.token_bytes

    @property
    def model_token_bytes(self) -> list[bytes]:
        """Bytes of every model id 0..N-1."""
        return [self.expanded.token_bytes[e] for e in self.normal_ids]

    def demolished(self, token_id: int) -> tuple[int, ...]:
        """E-ids of the normal tokens that replace E-id `token_id` (itself when normal)."""
        return self.demolish.get(token_id, (token_id,))

    # -- encoding --------------------------------------------------------------------------------

    def encoder(self, semantics: str = "merges", id_space: str = "model") -> BpeEncoder:
        """Algorithm 2: BPE over E, then demolish scaffold tokens.

        id_space: "model" -> compact ids 0..N-1 (what an LM sees); "expanded" -> E-ids.
        semantics: "merges" (HF merge-rule ranks) or "token_rank" (tiktoken).
        """
        if id_space not in ("model", "expanded"):
            raise ValueError(f"id_space must be 'model' or 'expanded', got {id_space!r}")
        to_out = self.model_id_of if id_space == "model" else {e: e for e in self.normal_ids}
        expansion = [
            tuple(to_out[x] for x in self.demolished(e)) for e in range(self.expanded_vocab_size)
        ]
        out_bytes = self.model_token_bytes if id_space == "model" else self.token_bytes
        return self.expanded.encoder(semantics, expansion=expansion, output_token_bytes=out_bytes)

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        latin1 = [b.decode("latin-1") for b in self.token_bytes]
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "expanded_vocab_size": self.expanded_vocab_size,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "merges": [list(m) for m in self.merges],
            "scaffold_ids": self.scaffold_ids,
            "scaffold_tokens_latin1": [latin1[s] for s in self.scaffold_ids],
            "demolish": {str(k): list(v) for k, v in sorted(self.demolish.items())},
            "normal_ids": self.normal_ids,
            "tokens_latin1": latin1,
            "pair_counts": list(map(int, self.pair_counts)),
            "applied_counts": list(map(int, self.applied_counts)),
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ScaffoldBpe:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={data.get('format')!r})")
        model = cls(
            merges=[tuple(m) for m in data["merges"]],
            scaffold_ids=list(data["scaffold_ids"]),
            special_tokens={str(k): int(v) for k, v in data["special_tokens"].items()},
            pattern=data["pattern"],
            events=list(data.get("events", [])),
            pair_counts=list(data.get("pair_counts", [])),
            applied_counts=list(data.get("applied_counts", [])),
        )
        stored = {int(k): tuple(v) for k, v in data.get("demolish", {}).items()}
        if stored and stored != model.demolish:
            raise ValueError("stored demolition table disagrees with the merges and scaffold set")
        return model

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> ScaffoldBpe:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _demolition_table(expanded: BpeVocab, scaffold: set[int]) -> dict[int, tuple[int, ...]]:
    """demolish(t) = t if t in V else demolish(a) ++ demolish(b) along the merge (a, b) -> t.

    A token with several parent pairs (duplicate merges) takes the demolition with the fewest
    pieces, then the smallest ids (spec section 1.5). Children are shorter than their parent, so
    processing by byte length resolves every dependency.
    """
    parents: dict[int, list[tuple[int, int]]] = {}
    for a, b, t in expanded.merges:
        parents.setdefault(t, []).append((a, b))
    table: dict[int, tuple[int, ...]] = {}

    def pieces(x: int) -> tuple[int, ...]:
        return table[x] if x in scaffold else (x,)

    for t in sorted(scaffold, key=lambda s: len(expanded.token_bytes[s])):
        table[t] = min((pieces(a) + pieces(b) for a, b in parents[t]), key=lambda p: (len(p), p))
    return table


def train_scaffold_bpe(
    piece_counts: Mapping[str, int] | Mapping[bytes, int],
    vocab_size: int,
    pretokenizer: PreTokenizer | None = None,
    byte_order: str = "reference",
    min_pair_count: int = 1,
) -> ScaffoldBpe:
    """Algorithm 1: Scaffold-BPE with exactly `vocab_size` normal tokens (fewer only when the corpus
    runs out of pairs and scaffold tokens).

    Args:
        piece_counts: {piece: occurrences} from `repro_core.bpe.count_pieces`.
        vocab_size: N = |V|, bytes and special tokens included.
        pretokenizer: regex and special tokens (GPT-2 regex + <|endoftext|> by default).
        byte_order: pair tie-break order of the bytes, "reference" (raw values) or "hf".
        min_pair_count: pairs rarer than this are never merged.
    """
    pretokenizer = pretokenizer or PreTokenizer()
    n_base = 256 + len(pretokenizer.special_tokens)
    if vocab_size < n_base:
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the {n_base} base ids "
            f"(256 bytes + {len(pretokenizer.special_tokens)} special tokens)"
        )
    trainer = BpeTrainer(piece_counts, len(pretokenizer.special_tokens), byte_order, min_pair_count)
    freq: list[int] = trainer.token_frequencies().tolist()  # f(t) in the current merged corpus L
    scaffold: set[int] = set()
    token_queue: list[tuple[int, int]] = []  # scaffold entries (-f, id); valid iff still current
    pending: deque = deque()  # merges produced by the trainer, not consumed yet (pair queue)
    merges, pair_counts, applied_counts = [], [], []
    events: list[list] = []
    history: list[tuple[str, int, int]] = []
    n_normal = n_base

    def pair_head() -> int:
        """f(Q_head) over the pairs: the count of the next merge plain BPE makes (0 if none)."""
        if not pending and not trainer.exhausted:
            batch = trainer.next_merges(max(64, vocab_size - n_normal + 1))
            pending.extend(
                zip(
                    batch.left.tolist(),
                    batch.right.tolist(),
                    batch.new_id.tolist(),
                    batch.pair_count.tolist(),
                    batch.applied_count.tolist(),
                )
            )
        return pending[0][3] if pending else 0

    def token_head() -> tuple[int, int]:
        """(f, id) of the valid head scaffold entry, (0, -1) when there is none."""
        while token_queue:
            neg_f, s = token_queue[0]
            if s in scaffold and freq[s] == -neg_f:
                return -neg_f, s
            heapq.heappop(token_queue)  # stale: re-activated or its frequency changed
        return 0, -1

    while n_normal < vocab_size:  # Alg. 1 l.4
        f_token, s = token_head()
        f_pair = pair_head()
        if s >= 0 and f_token >= f_pair:  # l.7-9: a scaffold token at the head is re-activated
            heapq.heappop(token_queue)
            scaffold.discard(s)
            n_normal += 1
            events.append(["reactivate", s, f_token])
            history.append(("reactivate", s, f_token))
            continue
        if not pending:
            break  # corpus exhausted: fewer than N normal tokens exist
        a, b, t, count, applied = pending.popleft()  # l.5-6, 12-14 (done by the BPE trainer)
        merges.append((a, b, t))
        pair_counts.append(count)
        applied_counts.append(applied)
        history.append(("merge", t, count))
        if t == len(freq):
            freq.append(0)
            n_normal += 1
        else:  # duplicate merge: the bytes of a + b already are token t
            events.append(["duplicate_merge", t, a, b])
            if t in scaffold:
                scaffold.discard(t)
                n_normal += 1
                events.append(["reactivate", t, freq[t]])
        freq[t] += applied
        freq[a] -= applied  # l.16-17; when a == b both lines subtract: 2 * applied
        freq[b] -= applied
        children = (a,) if a == b else (min(a, b), max(a, b))  # events list the smaller id first
        for c in children:  # scaffold children keep a current queue entry
            if c in scaffold and freq[c] > 0:
                heapq.heappush(token_queue, (-freq[c], c))
        q = max(token_head()[0], pair_head())  # f(Q_head) after all updates of this iteration
        for c in children:  # l.18-20
            if c >= n_base and c not in scaffold and freq[c] < q:
                scaffold.add(c)
                n_normal -= 1
                events.append(["mark", c, freq[c], q])
                if freq[c] > 0:
                    heapq.heappush(token_queue, (-freq[c], c))
    return ScaffoldBpe(
        merges=merges,
        scaffold_ids=sorted(scaffold),
        special_tokens={s: 256 + i for i, s in enumerate(pretokenizer.special_tokens)},
        pattern=pretokenizer.pattern,
        events=events,
        history=history,
        pair_counts=pair_counts,
        applied_counts=applied_counts,
    )


def plain_bpe_as_scaffold(vocab: BpeVocab) -> ScaffoldBpe:
    """A plain BPE vocabulary in the ScaffoldBpe container (S empty), so both share one tokenizer class."""
    return ScaffoldBpe(
        merges=list(vocab.merges),
        scaffold_ids=[],
        special_tokens=dict(vocab.special_tokens),
        pattern=vocab.pattern,
        pair_counts=list(vocab.pair_counts),
        applied_counts=list(vocab.applied_counts),
    )
