"""Any byte-level BPE vocabulary of the workspace in one form that the LBPE encoder reads.

LBPE changes encoding only, so it needs a vocabulary, not a trainer. `TokenVocabulary` holds it in
the core's id convention (ids 0..255 = the byte with that value, then the special tokens, then the
other tokens in rank order: earlier = higher priority), which the core's BPE kernels assume, plus
an output map to the ids a model sees:

* `from_bpe_vocab`: the core trainer's `repro_core.bpe.BpeVocab` (output ids = its ids);
* `from_scaffold`: Scaffold-BPE's expanded vocabulary E, then demolition into compact model ids
  (`order="over_e"`, the default), or LBPE over the normal tokens V alone (`order="over_v"`);
* `from_hf`: a HF byte-level BPE (`tokenizer.json`, or GPT-2's `vocab.json` + `merges.txt`),
  output ids = the HF ids.

Saved as one JSON file (`to_dict` / `from_dict`), independent of where it came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from repro_core.bpe import ENDOFTEXT, GPT2_PATTERN, BpeVocab, bytes_to_unicode

FORMAT = "repro-lbpe-vocab"
FORMAT_VERSION = 1
SCAFFOLD_ORDERS = ("over_e", "over_v")


@dataclass
class TokenVocabulary:
    """A byte-level BPE vocabulary in the core's id convention plus the map to output ids.

    token_bytes[i]: bytes of internal id i (0..255 = bytes; a special token's is its UTF-8 text).
    merges: (left, right, new) internal ids in rank order (empty when only the token set is known).
    special_tokens: {text: internal id}.
    expansion[i]: output ids that replace internal id i (one id, or a Scaffold-BPE demolition).
    output_token_bytes[o]: bytes of output id o (for decoding); its length is the model vocabulary.
    source: how it was built (for humans and for cache keys).
    """

    token_bytes: list[bytes]
    merges: list[tuple[int, int, int]]
    special_tokens: dict[str, int]
    expansion: list[tuple[int, ...]]
    output_token_bytes: list[bytes]
    pattern: str = GPT2_PATTERN
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.merges = [(int(a), int(b), int(t)) for a, b, t in self.merges]
        self.expansion = [tuple(int(x) for x in e) for e in self.expansion]
        n = len(self.token_bytes)
        if n < 256 or any(self.token_bytes[b] != bytes([b]) for b in range(256)):
            raise ValueError("ids 0..255 must be the 256 single bytes in order (core convention)")
        if len(self.expansion) != n:
            raise ValueError(f"expansion has {len(self.expansion)} entries for {n} token ids")
        n_out = len(self.output_token_bytes)
        for i, e in enumerate(self.expansion):
            if not e or any(not 0 <= x < n_out for x in e):
                raise ValueError(f"expansion of id {i} = {e} is empty or outside 0..{n_out - 1}")
            if i not in self.special_tokens.values() and (
                b"".join(self.output_token_bytes[x] for x in e) != self.token_bytes[i]
            ):
                raise ValueError(f"expansion of id {i} does not spell its bytes")
        for a, b, t in self.merges:
            if not (0 <= a < n and 0 <= b < n and 0 <= t < n) or (
                self.token_bytes[a] + self.token_bytes[b] != self.token_bytes[t]
            ):
                raise ValueError(f"merge ({a}, {b}) -> {t} does not concatenate to its token")

    @property
    def vocab_size(self) -> int:
        """Number of output ids (= the embedding size a model needs)."""
        return len(self.output_token_bytes)

    @property
    def output_special_tokens(self) -> dict[str, int]:
        return {s: self.expansion[i][0] for s, i in self.special_tokens.items()}

    # -- constructors ----------------------------------------------------------------------------

    @classmethod
    def from_bpe_vocab(cls, vocab: BpeVocab, source: dict | None = None) -> TokenVocabulary:
        """The core trainer's vocabulary; output ids are its ids."""
        return cls(
            token_bytes=list(vocab.token_bytes),
            merges=list(vocab.merges),
            special_tokens=dict(vocab.special_tokens),
            expansion=[(i,) for i in range(vocab.vocab_size)],
            output_token_bytes=list(vocab.token_bytes),
            pattern=vocab.pattern,
            source=source or {"kind": "bpe"},
        )

    @classmethod
    def from_scaffold(
        cls, model, order: str = "over_e", source: dict | None = None
    ) -> TokenVocabulary:
        """A Scaffold-BPE model (`repro_scaffold_bpe.ScaffoldBpe`); output ids = its model ids.

        order "over_e": LBPE over the expanded vocabulary E (scaffold tokens usable), then each
        scaffold token demolished into normal tokens (Algorithm 2 of Scaffold-BPE with LBPE in place
        of BPE). order "over_v": LBPE over the normal tokens V alone (nothing to demolish; no merge
        rules, so only the readings that need none: b and a).
        """
        if order not in SCAFFOLD_ORDERS:
            raise ValueError(f"scaffold order must be one of {SCAFFOLD_ORDERS}, got {order!r}")
        source = {**(source or {"kind": "scaffold"}), "order": order}
        if order == "over_e":
            expansion = [
                tuple(model.model_id_of[x] for x in model.demolished(e))
                for e in range(model.expanded_vocab_size)
            ]
            return cls(
                token_bytes=list(model.token_bytes),
                merges=list(model.merges),
                special_tokens=dict(model.special_tokens),
                expansion=expansion,
                output_token_bytes=list(model.model_token_bytes),
                pattern=model.pattern,
                source=source,
            )
        out = list(model.model_token_bytes)  # model ids keep bytes at 0..255 (bytes are pinned)
        return cls(
            token_bytes=out,
            merges=[],
            special_tokens={s: model.model_id_of[i] for s, i in model.special_tokens.items()},
            expansion=[(i,) for i in range(len(out))],
            output_token_bytes=out,
            pattern=model.pattern,
            source=source,
        )

    @classmethod
    def from_hf(
        cls, path: str | os.PathLike, special_tokens: Sequence[str] = (ENDOFTEXT,)
    ) -> TokenVocabulary:
        """A HF byte-level BPE: a directory or file `tokenizer.json`, or a directory with GPT-2's
        `vocab.json` + `merges.txt`. Output ids are the HF ids; ranks follow the HF ids (merged
        tokens are numbered in merge order there). `special_tokens` present in the vocabulary (or
        listed as added tokens) are split out before the regex, as HF does."""
        path = Path(path)
        tj = path / "tokenizer.json" if path.is_dir() else path
        if tj.is_file() and tj.suffix == ".json" and tj.name != "vocab.json":
            data = json.loads(tj.read_text(encoding="utf-8"))
            model = data.get("model") or {}
            if model.get("type") != "BPE":
                raise ValueError(f"{tj}: model type {model.get('type')!r}, expected a BPE model")
            vocab = dict(model["vocab"])
            merges = [
                tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]
            ]
            for added in data.get("added_tokens", []):
                vocab.setdefault(added["content"], added["id"])
            specials = {a["content"] for a in data.get("added_tokens", []) if a.get("special")}
            specials |= {s for s in special_tokens if s in vocab}
        elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
            lines = (path / "merges.txt").read_text(encoding="utf-8").splitlines()
            merges = [tuple(x.split(" ", 1)) for x in lines if x and not x.startswith("#version")]
            specials = {s for s in special_tokens if s in vocab}
        else:
            raise FileNotFoundError(
                f"{path}: no tokenizer.json and no vocab.json + merges.txt (a HF byte-level BPE)"
            )
        return cls._from_string_vocab(
            vocab, merges, sorted(specials), {"kind": "hf", "path": str(path)}
        )

    @classmethod
    def _from_string_vocab(
        cls, vocab: Mapping[str, int], merges, specials, source
    ) -> TokenVocabulary:
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        n_out = max(vocab.values()) + 1
        out_bytes: list[bytes | None] = [None] * n_out
        for s, i in vocab.items():
            if s in specials:
                out_bytes[i] = s.encode("utf-8")
            else:
                try:
                    out_bytes[i] = bytes(byte_of[c] for c in s)
                except KeyError:
                    raise ValueError(
                        f"token {s!r} is not in the byte-level alphabet: not a byte-level BPE"
                    ) from None
        missing = [i for i, b in enumerate(out_bytes) if b is None]
        if missing:
            raise ValueError(f"the vocabulary has holes at ids {missing[:5]}...")
        first_id: dict[bytes, int] = {}
        for i, b in enumerate(out_bytes):
            if i not in {vocab[s] for s in specials}:
                first_id.setdefault(b, i)
        lacking = [b for b in range(256) if bytes([b]) not in first_id]
        if lacking:
            raise ValueError(f"bytes {lacking[:8]} have no token: LBPE needs all 256 byte tokens")
        special_out = sorted(vocab[s] for s in specials)
        rest = [i for i, b in enumerate(out_bytes) if len(b) != 1 and i not in special_out]
        rest += [i for i, b in enumerate(out_bytes) if len(b) == 1 and first_id[b] != i]
        order = [first_id[bytes([b])] for b in range(256)] + special_out + sorted(rest)
        internal_of = {o: k for k, o in enumerate(order)}
        token_bytes = [out_bytes[o] for o in order]
        internal_merges = []
        for a, b in merges:
            ia, ib = vocab[a], vocab[b]
            joined = out_bytes[ia] + out_bytes[ib]
            internal_merges.append(
                (internal_of[first_id[out_bytes[ia]]], internal_of[first_id[out_bytes[ib]]],
                 internal_of[first_id[joined]])
            )  # fmt: skip
        return cls(
            token_bytes=token_bytes,
            merges=internal_merges,
            special_tokens={out_bytes[o].decode("utf-8"): internal_of[o] for o in special_out},
            expansion=[(o,) for o in order],
            output_token_bytes=out_bytes,
            source=source,
        )

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        latin1 = [b.decode("latin-1") for b in self.token_bytes]
        identity_out = self.output_token_bytes == self.token_bytes and all(
            e == (i,) for i, e in enumerate(self.expansion)
        )
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "source": self.source,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "tokens_latin1": latin1,
            "merges": [list(m) for m in self.merges],
            "expansion": None if identity_out else [list(e) for e in self.expansion],
            "output_tokens_latin1": None
            if identity_out
            else [b.decode("latin-1") for b in self.output_token_bytes],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> TokenVocabulary:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={data.get('format')!r})")
        token_bytes = [s.encode("latin-1") for s in data["tokens_latin1"]]
        expansion = data.get("expansion") or [(i,) for i in range(len(token_bytes))]
        out = data.get("output_tokens_latin1")
        return cls(
            token_bytes=token_bytes,
            merges=[tuple(m) for m in data["merges"]],
            special_tokens={str(k): int(v) for k, v in data["special_tokens"].items()},
            expansion=[tuple(e) for e in expansion],
            output_token_bytes=[s.encode("latin-1") for s in out] if out else token_bytes,
            pattern=data["pattern"],
            source=dict(data.get("source", {})),
        )

    def save(self, path: str | os.PathLike) -> None:
        from repro_core.results import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TokenVocabulary:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
