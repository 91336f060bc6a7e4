"""LBPE as a `transformers` tokenizer, and the `lbpe:...` spec of `data.tokenizer`.

`LbpeTokenizer` works with the core trainer, `generate()` and lm-eval like any HF tokenizer
(`__call__`, `encode`, `decode`, `batch_decode`, `save_pretrained` / `from_pretrained`). Token
strings are the GPT-2 `bytes_to_unicode` spelling of the token bytes (special tokens: their text).
Importing this module registers the class with `AutoTokenizer` (no remote code needed).

`from_spec` is the plug-in the core's `repro_core.data.get_tokenizer` calls for
`data.tokenizer=lbpe:SOURCE[:key=value...]` (entry point group `repro.tokenizers`):

    lbpe:4096                       plain BPE, N=4096, trained on the corpus by repro_core.bpe
    lbpe:bpe:4096                   the same
    lbpe:scaffold:4096              Scaffold-BPE (N=4096 normal tokens) by repro_scaffold_bpe
    lbpe:$REPRO_DATA_DIR/gpt2-tokenizer     a HF byte-level BPE (tokenizer.json or vocab+merges)
    lbpe:4096:tie=rank:reading=b    options: reading=b|a|a_rules|bpe, tie=leftmost|rank,
                                    order=over_e|over_v (Scaffold-BPE), pattern=gpt2|gpt2-split-digits

Trained vocabularies are cached under `$REPRO_CACHE_DIR/tokenizers/` keyed by the corpus.
`reading=bpe` is plain BPE encoding of the same vocabulary (the paper's baseline, same ids).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from repro_core.bpe import bytes_to_unicode
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizer

from repro_lbpe.lbpe import LbpeEncoder
from repro_lbpe.spec import PATTERNS, VOCAB_FILE, _trained_size, parse_spec
from repro_lbpe.vocab import TokenVocabulary

CACHE_VERSION = 1


class LbpeTokenizer(PreTrainedTokenizer):
    """HF tokenizer over an `LbpeEncoder`.

    Args:
        vocab_file: a `lbpe_vocab.json` (`TokenVocabulary.save`), or pass `vocab=`.
        vocab: an in-memory `TokenVocabulary`.
        reading: "b" (default), "a", "a_rules" or "bpe" (see `repro_lbpe.lbpe`).
        tie: "leftmost" (default) or "rank" (reading b's equal-length rule).
        eos_token: `<|endoftext|>` when the vocabulary has it. `encode` adds no BOS/EOS.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | None = None,
        vocab: TokenVocabulary | None = None,
        reading: str = "b",
        tie: str = "leftmost",
        eos_token: str | None = "<|endoftext|>",
        clean_up_tokenization_spaces: bool = False,
        **kwargs: Any,
    ) -> None:
        if vocab is None:
            if vocab_file is None:
                raise ValueError(
                    "pass vocab_file=<path to lbpe_vocab.json> or vocab=TokenVocabulary"
                )
            vocab = TokenVocabulary.load(vocab_file)
        self.lbpe_vocab = vocab
        self.encoder = LbpeEncoder(vocab, reading, tie)
        to_char = bytes_to_unicode()
        self._byte_of_char = {c: b for b, c in to_char.items()}
        specials = {o: s for s, o in vocab.output_special_tokens.items()}
        self._id_to_token = [
            specials.get(o, "".join(to_char[x] for x in tb))
            for o, tb in enumerate(vocab.output_token_bytes)
        ]
        self._token_to_id = {}
        for o, t in enumerate(self._id_to_token):
            self._token_to_id.setdefault(t, o)
        if eos_token is not None and str(eos_token) not in vocab.special_tokens:
            eos_token = None
        super().__init__(
            eos_token=eos_token,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            reading=reading,
            tie=tie,
            **kwargs,
        )

    @property
    def reading(self) -> str:
        return self.encoder.reading

    @property
    def tie(self) -> str:
        return self.encoder.tie

    # -- vocabulary ------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.lbpe_vocab.vocab_size

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._token_to_id)
        vocab.update(getattr(self, "_added_tokens_encoder", {}))
        return vocab

    def _convert_token_to_id(self, token: str) -> int:
        return self._token_to_id[token]

    def _convert_id_to_token(self, index: int) -> str:
        return self._id_to_token[index]

    def _has_foreign_added_tokens(self) -> bool:
        return any(t not in self.lbpe_vocab.special_tokens for t in self._added_tokens_encoder)

    # -- encoding --------------------------------------------------------------------------------

    def encode_ids(self, text: str, allow_special: bool = True) -> list[int]:
        """Output ids of `text` (fast path; special-token strings map to their ids if allowed)."""
        return self.encoder.encode(text, allowed_special=allow_special)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [self._id_to_token[i] for i in self.encoder.encode_ordinary(text)]

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        if self._has_foreign_added_tokens():
            return super().tokenize(text, **kwargs)
        split_special = kwargs.pop("split_special_tokens", self.split_special_tokens)
        return [self._id_to_token[i] for i in self.encode_ids(text, not split_special)]

    def _plain_batch(self, text, text_pair, kwargs: dict) -> bool:
        """A batch of strings with nothing for transformers to add, pad, truncate or convert."""
        from transformers.tokenization_utils_base import TruncationStrategy
        from transformers.utils import PaddingStrategy

        return (
            isinstance(text, list | tuple)
            and bool(text)
            and all(isinstance(t, str) for t in text)
            and text_pair is None
            and kwargs.get("padding_strategy", PaddingStrategy.DO_NOT_PAD)
            == PaddingStrategy.DO_NOT_PAD
            and kwargs.get("truncation_strategy", TruncationStrategy.DO_NOT_TRUNCATE)
            == TruncationStrategy.DO_NOT_TRUNCATE
            and kwargs.get("return_tensors") is None
            and not any(
                kwargs.get(k)
                for k in (
                    "is_split_into_words",
                    "sanitize_control_tokens",
                    "return_overflowing_tokens",
                    "return_special_tokens_mask",
                    "return_length",
                    "return_token_type_ids",
                )
            )  # fmt: skip
            and self.build_inputs_with_special_tokens([0]) == [0]  # adds no BOS/EOS
            and not self._has_foreign_added_tokens()
        )

    def _encode_plus(self, text, text_pair=None, **kwargs: Any):
        # Fast path for batches (the data pipeline): one encoder call per text, no per-item
        # transformers bookkeeping. Same ids as the per-item path (tested).
        if self._plain_batch(text, text_pair, kwargs):
            from transformers import BatchEncoding

            allow = not kwargs.get("split_special_tokens", self.split_special_tokens)
            ids = [self.encode_ids(t, allow) for t in text]
            out = {"input_ids": ids}
            if kwargs.get("return_attention_mask") is not False:
                out["attention_mask"] = [[1] * len(x) for x in ids]
            return BatchEncoding(out)
        # Fast path: hand transformers ready-made ids for plain strings (it accepts lists of ints).
        simple = not kwargs.get("is_split_into_words") and not kwargs.get("sanitize_control_tokens")
        if simple and not self._has_foreign_added_tokens():
            allow = not kwargs.get("split_special_tokens", self.split_special_tokens)
            if isinstance(text, str) and (text_pair is None or isinstance(text_pair, str)):
                ids = self.encode_ids(text, allow)
                pair_ids = self.encode_ids(text_pair, allow) if text_pair is not None else None
                if ids and (pair_ids is None or pair_ids):  # empty lists would read as a batch
                    kwargs.pop("split_special_tokens", None)
                    return super()._encode_plus(ids, pair_ids, **kwargs)
        return super()._encode_plus(text, text_pair, **kwargs)

    # -- decoding --------------------------------------------------------------------------------

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        out = bytearray()
        for t in tokens:
            if t in self.lbpe_vocab.special_tokens or t in self._added_tokens_encoder:
                out += t.encode("utf-8")
            else:
                out += bytes(self._byte_of_char[c] for c in t)
        return out.decode("utf-8", errors="replace")

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        n = self.lbpe_vocab.vocab_size
        token_bytes = self.lbpe_vocab.output_token_bytes
        added = self._added_tokens_decoder
        out = bytearray()
        for i in map(int, token_ids):
            if i in skip:
                continue
            if 0 <= i < n:
                out += token_bytes[i]
            elif i in added:
                out += added[i].content.encode("utf-8")
            else:
                raise IndexError(f"token id {i} is outside the vocabulary of size {len(self)}")
        text = out.decode("utf-8", errors="replace")
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return self.clean_up_tokenization(text) if clean else text

    # -- saving ----------------------------------------------------------------------------------

    def save_vocabulary(
        self, save_directory: str, filename_prefix: str | None = None
    ) -> tuple[str, ...]:
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(
                f"save_vocabulary needs an existing directory: {save_directory}"
            )
        name = (f"{filename_prefix}-" if filename_prefix else "") + VOCAB_FILE
        path = os.path.join(save_directory, name)
        self.lbpe_vocab.save(path)
        return (path,)


class LbpeTokenizerConfig(PretrainedConfig):
    """Marker config: `AutoTokenizer.register` needs one to find `LbpeTokenizer` by name."""

    model_type = "lbpe_tokenizer"


AutoTokenizer.register(LbpeTokenizerConfig, slow_tokenizer_class=LbpeTokenizer, exist_ok=True)


# ------------------------------------------------------------------------------------------------
# data.tokenizer = lbpe:...
# ------------------------------------------------------------------------------------------------

_PIECE_COUNTS: dict = {}  # (corpus fingerprint, pattern) -> piece counts, reused within a process


def train_vocabulary(texts, method: str, size: int, pattern: str = "gpt2", counts=None):
    """Plain BPE (repro_core.bpe, a `BpeVocab`) or Scaffold-BPE (repro_scaffold_bpe, a
    `ScaffoldBpe`; callers pick the combination order) trained on `texts` (or on their piece
    `counts` when given)."""
    from repro_core.bpe import ENDOFTEXT, PreTokenizer, count_pieces, train_bpe

    pretok = PreTokenizer(PATTERNS[pattern], [ENDOFTEXT])
    if counts is None:
        counts = count_pieces(texts, pretok)
    if method == "scaffold":
        try:
            from repro_scaffold_bpe.scaffold import train_scaffold_bpe
        except ImportError:
            raise ImportError(
                "lbpe:scaffold:N needs repro-scaffold-bpe: pip install 'repro-lbpe[scaffold]'"
            ) from None
        return train_scaffold_bpe(counts, size, pretok)
    return train_bpe(counts, size, pretok)


def cached_source_model(corpus, method: str, size: int, pattern: str):
    """The trained BpeVocab / ScaffoldBpe for (corpus, method, size, pattern), cached on disk."""
    from repro_core.data import cache_dir, corpus_splits, load_split_texts
    from repro_core.results import write_text_atomic

    if corpus is None:
        raise ValueError(f"lbpe:{method}:{size} is trained on a corpus; pass the corpus")
    path = (
        cache_dir()
        / "tokenizers"
        / f"{corpus.fingerprint()}-lbpe-{method}-{size}-{pattern}-v{CACHE_VERSION}.json"
    )
    if method == "scaffold":
        from repro_scaffold_bpe.scaffold import ScaffoldBpe as model_cls
    else:
        from repro_core.bpe import BpeVocab as model_cls
    if path.is_file():
        return model_cls.load(path)
    splits = corpus_splits(corpus)
    key = (corpus.fingerprint(), pattern)
    if key not in _PIECE_COUNTS:  # the tokenizer study trains several vocabularies per corpus
        from repro_core.bpe import ENDOFTEXT, PreTokenizer, count_pieces

        texts = load_split_texts(corpus, "train" if "train" in splits else splits[0])
        _PIECE_COUNTS.clear()
        _PIECE_COUNTS[key] = count_pieces(texts, PreTokenizer(PATTERNS[pattern], [ENDOFTEXT]))
    model = train_vocabulary(None, method, size, pattern, counts=_PIECE_COUNTS[key])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(model.to_dict()))
    return model


def build_vocabulary(source: str, options: dict, corpus=None) -> TokenVocabulary:
    """The `TokenVocabulary` of a spec source (see the module docstring)."""
    pattern = options.get("pattern", "gpt2")
    trained = _trained_size(source)
    if trained is not None:
        method, size = trained
        model = cached_source_model(corpus, method, size, pattern)
        info = {"kind": method, "vocab_size": size, "pattern": pattern}
        if method == "scaffold":
            return TokenVocabulary.from_scaffold(model, options.get("order", "over_e"), info)
        return TokenVocabulary.from_bpe_vocab(model, info)
    path = Path(source).expanduser()
    if (path / VOCAB_FILE).is_file():
        return TokenVocabulary.load(path / VOCAB_FILE)
    if path.exists():
        return TokenVocabulary.from_hf(path)
    raise FileNotFoundError(
        f"lbpe:{source}: not N, bpe:N, scaffold:N, a directory with {VOCAB_FILE}, or a HF "
        "tokenizer (tokenizer.json or vocab.json + merges.txt)"
    )


def from_spec(rest: str, corpus=None) -> LbpeTokenizer:
    """Plug-in of `repro_core.data.get_tokenizer` for `lbpe:REST` (see the module docstring)."""
    source, options = parse_spec(rest)
    vocab = build_vocabulary(source, options, corpus)
    tok = LbpeTokenizer(
        vocab=vocab, reading=options.get("reading", "b"), tie=options.get("tie", "leftmost")
    )
    tok.name_or_path = f"lbpe:{rest}"
    return tok
