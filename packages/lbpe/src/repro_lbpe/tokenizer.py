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
from pathlib import Path
from typing import Any

from repro_core.byte_tokenizer import ByteLevelTokenizer
from transformers import AutoTokenizer, PretrainedConfig

from repro_lbpe.lbpe import LbpeEncoder
from repro_lbpe.spec import PATTERNS, VOCAB_FILE, _trained_size, parse_spec
from repro_lbpe.vocab import TokenVocabulary

CACHE_VERSION = 1


class LbpeTokenizer(ByteLevelTokenizer):
    """HF tokenizer over an `LbpeEncoder`.

    Args:
        vocab_file: a `lbpe_vocab.json` (`TokenVocabulary.save`), or pass `vocab=`.
        vocab: an in-memory `TokenVocabulary`.
        reading: "b" (default), "a", "a_rules" or "bpe" (see `repro_lbpe.lbpe`).
        tie: "leftmost" (default) or "rank" (reading b's equal-length rule).
        eos_token: `<|endoftext|>` when the vocabulary has it. `encode` adds no BOS/EOS.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE}

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
        self._set_encoder(self.encoder, vocab.output_token_bytes, vocab.output_special_tokens)
        super().__init__(
            eos_token=self._eos_if_known(eos_token),
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

    def save_vocabulary(
        self, save_directory: str, filename_prefix: str | None = None
    ) -> tuple[str, ...]:
        path = self._save_path(save_directory, filename_prefix, VOCAB_FILE)
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
