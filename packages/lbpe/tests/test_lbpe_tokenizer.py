"""LbpeTokenizer (transformers wrapper), the `lbpe:` spec plug-in of the core, and HF vocabularies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from repro_core.bpe import PreTokenizer, count_pieces, to_hf_tokenizer, train_bpe
from repro_lbpe import LbpeEncoder, TokenVocabulary
from repro_lbpe.tokenizer import LbpeTokenizer, from_spec, parse_spec

DATA_DIR = Path(os.environ.get("REPRO_DATA_DIR") or "/nonexistent")
GPT2_DIR = DATA_DIR / "gpt2-tokenizer"
needs_gpt2 = pytest.mark.skipif(
    not (GPT2_DIR / "vocab.json").is_file(), reason="set REPRO_DATA_DIR to the shared data folder"
)
TEXT = (
    "The Arizona database connects international reporting! Californians reinterpretations, "
    "1999 and 19999 \u6771\u4eac \U0001f642 caf\u00e9  \r\n  end<|endoftext|>next"
)
LINES = [
    "The quick brown fox.\n",
    "",
    " jumps over\n",
    "the lazy dog<|endoftext|>",
    "caf\u00e9 \u6771\u4eac\n",
]


@pytest.fixture(scope="module")
def bpe_vocab():
    text = (TEXT + " the there then other another brother mother\n") * 30
    return train_bpe(count_pieces(text, PreTokenizer()), 400)


@pytest.fixture(scope="module")
def tokenizer(bpe_vocab):
    return LbpeTokenizer(vocab=TokenVocabulary.from_bpe_vocab(bpe_vocab))


def test_hf_calls_equal_the_encoder(tokenizer):
    enc = tokenizer.encoder
    assert tokenizer.encode(TEXT, add_special_tokens=False) == enc.encode(TEXT)
    assert tokenizer(TEXT)["input_ids"] == enc.encode(TEXT)
    assert tokenizer.decode(enc.encode(TEXT)) == TEXT
    assert tokenizer.convert_tokens_to_string(tokenizer.tokenize(TEXT)) == TEXT
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 256


def test_batch_fast_path_equals_the_per_text_path(tokenizer):
    batch = tokenizer(LINES, add_special_tokens=False)
    assert batch["input_ids"] == [
        tokenizer(t, add_special_tokens=False)["input_ids"] for t in LINES
    ]
    assert batch["attention_mask"] == [[1] * len(x) for x in batch["input_ids"]]
    padding = LbpeTokenizer(vocab=tokenizer.lbpe_vocab)
    padding.pad_token = padding.eos_token
    padded = padding(LINES, padding=True)  # not the fast path: transformers pads
    assert len({len(x) for x in padded["input_ids"]}) == 1
    assert tokenizer.batch_decode(batch["input_ids"]) == LINES


def test_token_caches_of_different_readings_never_collide(tokenizer):
    """The core caches token ids by tokenizer fingerprint: the reading and tie must be part of it."""
    from repro_core.data import tokenizer_fingerprint

    prints = {
        tokenizer_fingerprint(LbpeTokenizer(vocab=tokenizer.lbpe_vocab, reading=r, tie=t))
        for r, t in (("b", "leftmost"), ("b", "rank"), ("bpe", "leftmost"), ("a", "leftmost"))
    }
    assert len(prints) == 4


def test_save_and_load_round_trip_gives_identical_encodings(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tok = LbpeTokenizer(vocab=tokenizer.lbpe_vocab, tie="rank")
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "LbpeTokenizer" and loaded.tie == "rank"
    assert loaded(LINES)["input_ids"] == tok(LINES)["input_ids"]
    assert loaded.get_vocab() == tok.get_vocab() and len(loaded) == len(tok)


def test_same_vocabulary_and_ids_as_hf_bpe_of_the_same_merges(bpe_vocab, tokenizer):
    hf = to_hf_tokenizer(bpe_vocab)
    assert tokenizer.get_vocab() == hf.get_vocab()
    bpe_tok = LbpeTokenizer(vocab=tokenizer.lbpe_vocab, reading="bpe")
    assert bpe_tok.encode(TEXT, add_special_tokens=False) == hf.encode(TEXT).ids


def test_core_get_tokenizer_resolves_the_lbpe_plugin(tmp_path, monkeypatch):
    from repro_core.data import get_tokenizer, resolve_corpus

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text((TEXT + "\n") * 50)
    corpus = resolve_corpus(str(corpus_file))
    tok = get_tokenizer("lbpe:300:tie=rank", corpus)
    assert isinstance(tok, LbpeTokenizer) and tok.tie == "rank" and len(tok) == 300
    baseline = get_tokenizer("lbpe:bpe:300:reading=bpe", corpus)
    assert baseline.get_vocab() == tok.get_vocab()
    tok.save_pretrained(tmp_path / "saved")
    reloaded = get_tokenizer(str(tmp_path / "saved"))  # plug-in classes registered before loading
    assert reloaded(LINES)["input_ids"] == tok(LINES)["input_ids"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("4096:tie=longest", "bad option 'tie=longest'"),
        ("tie=rank", "no vocabulary source"),
        ("bpe:100", ">= 257"),
    ],
)
def test_bad_specs_fail_with_a_message_naming_the_fix(spec, message):
    with pytest.raises(ValueError, match=message):
        source, options = parse_spec(spec)
        from_spec(spec)


@needs_gpt2
def test_gpt2_vocabulary_bpe_reading_equals_hf_gpt2(tmp_path):
    from transformers import GPT2Tokenizer

    hf = GPT2Tokenizer.from_pretrained(GPT2_DIR)
    vocab = TokenVocabulary.from_hf(GPT2_DIR)
    assert vocab.vocab_size == len(hf) == 50257
    ours = LbpeTokenizer(vocab=vocab, reading="bpe")
    assert ours.encode(TEXT, add_special_tokens=False) == hf.encode(TEXT, add_special_tokens=False)
    assert ours.get_vocab() == hf.get_vocab()
    # the same vocabulary read from a tokenizer.json
    hf.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    from_json = TokenVocabulary.from_hf(tmp_path / "tokenizer.json")
    assert from_json.output_token_bytes == vocab.output_token_bytes
    assert from_json.merges == vocab.merges


@needs_gpt2
def test_lbpe_over_gpt2_keeps_in_vocabulary_pieces_whole_and_round_trips():
    tok = LbpeTokenizer(vocab=TokenVocabulary.from_hf(GPT2_DIR))
    pretok = PreTokenizer()
    whole = [
        tb.decode("utf-8")
        for tb in tok.lbpe_vocab.output_token_bytes[1000:50000:97]
        if tb.decode("utf-8", "ignore").encode() == tb
        and pretok.pieces(tb.decode("utf-8")) == [tb.decode("utf-8")]
    ]
    assert len(whole) > 300
    for piece in whole:
        assert len(tok.encode(piece, add_special_tokens=False)) == 1, piece
    assert tok.decode(tok.encode(TEXT)) == TEXT
    enc = tok.encoder
    assert (
        isinstance(enc, LbpeEncoder)
        and enc.decode_bytes(enc.encode_bytes(b"\xff\xfe ok")) == b"\xff\xfe ok"
    )
