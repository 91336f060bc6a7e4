"""Corpora, tokenizers, the token cache and the block sampler."""

import os
from pathlib import Path

import numpy as np
import pytest
from repro_core.data import (
    BlockSampler,
    as_blocks,
    get_tokenizer,
    resolve_corpus,
    tokenize_corpus,
    train_sentencepiece_tokenizer,
)

DATA = Path(os.environ.get("REPRO_DATA_DIR", "/nonexistent"))
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="REPRO_DATA_DIR (../shared/data) is not available"
)


@needs_data
def test_named_corpus_resolves_to_local_files():
    corpus = resolve_corpus("wikitext-2")
    assert corpus.files["train"][0] == DATA / "wikitext-2" / "train.txt"
    assert set(corpus.files) == {"train", "validation", "test"}


def test_missing_corpus_says_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"wikitext-2.*REPRO_DATA_DIR.*Salesforce/wikitext"):
        resolve_corpus("wikitext-2")
    with pytest.raises(FileNotFoundError, match="not one of the named corpora"):
        resolve_corpus("no_such_corpus")


@pytest.fixture()
def small_corpus(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "déjà", "vu", "naïve", "42", "and", "ran"]
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 12))) + "\n" for _ in range(3000)]
    path = tmp_path / "toy.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_bpe_tokenizer_trains_caches_and_round_trips(small_corpus):
    corpus = resolve_corpus(str(small_corpus))
    tok = get_tokenizer("bpe:300", corpus)
    assert 257 < len(tok) <= 300 and tok.eos_token == "<|endoftext|>"
    text = "the naïve cat ran on déjà vu 42"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert get_tokenizer("bpe:300", corpus).get_vocab() == tok.get_vocab()  # cached copy


def test_sentencepiece_tokenizer_is_an_hf_tokenizer(small_corpus, tmp_path):
    import sentencepiece as spm

    texts = small_corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    tok = train_sentencepiece_tokenizer(texts, 300, tmp_path / "sp")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp" / "tokenizer.model"))
    text = "the naïve cat sat on a mat"
    assert tok(text, add_special_tokens=False)["input_ids"] == sp.encode(text)
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_tokenized_cache_counts_bytes_and_splits_deterministically(small_corpus):
    corpus = resolve_corpus(str(small_corpus))
    tok = get_tokenizer("bpe:300", corpus)
    splits = tokenize_corpus(corpus, tok, val_fraction=0.2)
    total_bytes = len(small_corpus.read_bytes())
    assert splits["train"].num_bytes + splits["validation"].num_bytes == total_bytes
    n = len(splits["train"].tokens) + len(splits["validation"].tokens)
    assert abs(len(splits["validation"].tokens) - 0.2 * n) <= 1
    ids = tok(
        small_corpus.read_text(encoding="utf-8").splitlines(keepends=True), add_special_tokens=False
    )["input_ids"]
    flat = np.concatenate([np.asarray(i) for i in ids])
    assert np.array_equal(
        np.concatenate([splits["train"].tokens, splits["validation"].tokens]), flat
    )
    again = tokenize_corpus(corpus, tok, val_fraction=0.2)  # from the memmap cache
    assert isinstance(again["train"].tokens, np.memmap)
    assert np.array_equal(again["train"].tokens, splits["train"].tokens)


def test_blocks_and_sampler():
    tokens = np.arange(103)
    blocks = as_blocks(tokens, 10)
    assert blocks.shape == (10, 10) and blocks[3, 0] == 30
    one = BlockSampler(40, micro_batch=4, grad_accum=2, world_size=1, seed=7)
    two = BlockSampler(40, micro_batch=4, grad_accum=1, world_size=2, seed=7)
    for step in range(12):  # crosses epochs (5 steps per epoch)
        assert np.array_equal(one.indices(step, 0, 0), two.indices(step, 0, 0))
        assert np.array_equal(one.indices(step, 1, 0), two.indices(step, 0, 1))
    epoch = np.concatenate([one.indices(s, m, 0) for s in range(5) for m in range(2)])
    assert sorted(epoch.tolist()) == list(range(40))  # every block once per epoch
    with pytest.raises(ValueError, match="exceeds"):
        BlockSampler(10, micro_batch=8, grad_accum=2, world_size=1, seed=0)
