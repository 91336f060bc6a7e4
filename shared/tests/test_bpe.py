"""Tests of repro_core.bpe: golden data, a brute-force trainer/encoder, HF `tokenizers`, invariants."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repro_core.bpe import (
    ENDOFTEXT,
    GPT2_PATTERN,
    BpeTrainer,
    BpeVocab,
    PreTokenizer,
    _byte_order_permutation,
    count_pieces,
    piece_to_bytes,
    to_hf_tokenizer,
    train_bpe,
)

DATA_DIR = os.environ.get("REPRO_DATA_DIR")
GOLDEN_DIR = Path(DATA_DIR or "/nonexistent") / "reference" / "bpe"
needs_golden = pytest.mark.skipif(
    not (GOLDEN_DIR / "case_N320.json").is_file(),
    reason=f"golden BPE data not found: set REPRO_DATA_DIR (now {DATA_DIR!r}) to the shared data folder",
)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def golden():
    corpus = json.loads((GOLDEN_DIR / "corpus.json").read_text(encoding="utf-8"))
    case = json.loads((GOLDEN_DIR / "case_N320.json").read_text(encoding="utf-8"))
    return corpus, case


@pytest.fixture(scope="module")
def golden_counts(golden):
    return count_pieces(golden[0]["train_text"], PreTokenizer())


# ------------------------------------------------------------------------------------------------
# brute-force references (recount everything at every step)
# ------------------------------------------------------------------------------------------------


def naive_train(piece_counts, vocab_size, n_special=1, byte_order="reference"):
    """Plain BPE, recounting all pairs after every merge. Returns (merges, pair counts, applied)."""
    order = _byte_order_permutation(byte_order).tolist()

    def rank(x):
        return order[x] if x < 256 else x

    n_base = 256 + n_special
    words = [(list(piece_to_bytes(p)), c) for p, c in piece_counts.items() if c > 0]
    token_bytes = {i: bytes([i]) for i in range(256)}
    id_of = {b: i for i, b in token_bytes.items()}
    n_tokens = n_base
    merges, pair_counts, applied_counts = [], [], []
    while n_tokens < vocab_size:
        counts = Counter()
        for w, c in words:
            for x, y in zip(w, w[1:]):
                counts[(x, y)] += c
        if not counts:
            break
        (a, b), best = min(counts.items(), key=lambda kv: (-kv[1], rank(kv[0][0]), rank(kv[0][1])))
        joined = token_bytes[a] + token_bytes[b]
        t = id_of.get(joined)
        if t is None:
            t = n_tokens
            n_tokens += 1
            token_bytes[t] = joined
            id_of[joined] = t
        applied = 0
        for k, (w, c) in enumerate(words):
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(t)
                    applied += c
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[k] = (out, c)
        merges.append((a, b, t))
        pair_counts.append(best)
        applied_counts.append(applied)
    return merges, pair_counts, applied_counts


def naive_encode_piece(data: bytes, vocab: BpeVocab, semantics: str) -> list[int]:
    """One merge at a time: the lowest-ranked candidate pair, leftmost first."""
    rule_rank = {(a, b): (k, t) for k, (a, b, t) in reversed(list(enumerate(vocab.merges)))}
    specials = set(vocab.special_tokens.values())
    id_of = {tb: i for i, tb in enumerate(vocab.token_bytes) if i not in specials}
    syms = list(data)
    while True:
        best = None
        for i, (x, y) in enumerate(zip(syms, syms[1:])):
            if semantics == "merges":
                hit = rule_rank.get((x, y))
            else:
                t = id_of.get(vocab.token_bytes[x] + vocab.token_bytes[y])
                hit = None if t is None else (t, t)
            if hit is not None and (best is None or hit[0] < best[0]):
                best = (hit[0], i, hit[1])
        if best is None:
            return syms
        _, i, t = best
        syms[i : i + 2] = [t]


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------

# A small alphabet makes long merge chains, ties and overlapping pairs ("aaaa") likely.
words = st.text(alphabet="aabbcd é1 ", min_size=1, max_size=10)
corpora = st.dictionaries(words, st.integers(1, 20), min_size=1, max_size=25)


# ------------------------------------------------------------------------------------------------
# golden data
# ------------------------------------------------------------------------------------------------


@needs_golden
def test_golden_n320_merges_and_applied_counts(golden, golden_counts):
    _, case = golden
    vocab = train_bpe(golden_counts, case["vocab_size"])
    assert vocab.merges == [tuple(m) for m in case["bpe"]["merges"]]
    assert vocab.applied_counts == case["bpe"]["merge_applied_counts"]
    assert vocab.vocab_size == case["vocab_size"]
    for tid, latin1 in case["bpe"]["tokens_latin1"].items():
        assert vocab.token_bytes[int(tid)] == latin1.encode("latin-1")


@needs_golden
@pytest.mark.parametrize("semantics,key", [("merges", "bpe"), ("token_rank", "bpe_tokrank")])
def test_golden_n320_probe_encodings(golden, golden_counts, semantics, key):
    corpus, case = golden
    enc = train_bpe(golden_counts, case["vocab_size"]).encoder(semantics)
    for probe in case["probes"]:
        assert enc.encode(probe["text"]) == probe[key]["ids"], probe["text"]
    for split in ("train", "heldout"):
        n_tokens = len(enc.encode(corpus[f"{split}_text"]))
        assert n_tokens == case["corpus_stats"][split][key]["n_tokens"]


# ------------------------------------------------------------------------------------------------
# brute force
# ------------------------------------------------------------------------------------------------


@FAST
@given(corpus=corpora, extra=st.integers(1, 80), byte_order=st.sampled_from(["reference", "hf"]))
def test_trainer_matches_bruteforce(corpus, extra, byte_order):
    vocab_size = 257 + extra
    vocab = train_bpe(corpus, vocab_size, byte_order=byte_order)
    merges, pair_counts, applied = naive_train(corpus, vocab_size, byte_order=byte_order)
    assert vocab.merges == merges
    assert vocab.pair_counts == pair_counts
    assert vocab.applied_counts == applied


@FAST
@given(corpus=corpora, extra=st.integers(1, 60), text=st.text(alphabet="aabbcdé1 x\n", max_size=30))
def test_encoder_matches_bruteforce(corpus, extra, text):
    vocab = train_bpe(corpus, 257 + extra)
    pretok = vocab.pretokenizer()
    for semantics in ("merges", "token_rank"):
        enc = vocab.encoder(semantics)
        expected = [
            t
            for p in pretok.findall(text)
            for t in naive_encode_piece(piece_to_bytes(p), vocab, semantics)
        ]
        assert enc.encode(text) == expected


def test_resumed_training_equals_one_run():
    corpus = Counter({"aaaa": 3, "abab": 5, "ab": 2, "bba": 4, "aaab": 1, " cab": 2})
    one = BpeTrainer(corpus).next_merges(1000)
    trainer = BpeTrainer(corpus)
    parts = []
    while not trainer.exhausted:
        parts.append(trainer.next_merges(1))
    for field in ("left", "right", "new_id", "pair_count", "applied_count"):
        assert (
            np.concatenate([getattr(p, field) for p in parts]).tolist()
            == getattr(one, field).tolist()
        )


def test_token_frequencies_match_recount_of_merged_corpus():
    corpus = Counter({"aaaaa": 3, "abab": 5, "ab": 2, "bbaab": 4, " a": 7})
    trainer = BpeTrainer(corpus)
    records = trainer.next_merges(6)
    vocab = BpeVocab(
        list(zip(records.left.tolist(), records.right.tolist(), records.new_id.tolist()))
    )
    enc = vocab.encoder()
    recount = Counter()
    for piece, c in corpus.items():
        for t in enc.encode_ordinary(piece):
            recount[t] += c
    freq = trainer.token_frequencies()
    assert {t: int(f) for t, f in enumerate(freq) if f} == dict(recount)


# ------------------------------------------------------------------------------------------------
# HF tokenizers
# ------------------------------------------------------------------------------------------------


@needs_golden
def test_hf_byte_order_matches_tokenizers_bpetrainer(golden):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    corpus, _ = golden
    # HF counts the text of special tokens inside training lines; keep them out of this comparison
    lines = corpus["train_text"].replace(ENDOFTEXT, "\n").splitlines(keepends=True)
    vocab = train_bpe(count_pieces(lines), 700, byte_order="hf")
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[ENDOFTEXT],
    )
    hf.train_from_iterator(lines, trainer)
    hf_merges = [tuple(m) for m in json.loads(hf.to_str())["model"]["merges"]]
    ours = to_hf_tokenizer(vocab)
    assert [tuple(m) for m in json.loads(ours.to_str())["model"]["merges"]] == hf_merges


@needs_golden
def test_encoder_matches_hf_tokenizers(golden, golden_counts):
    corpus, _ = golden
    vocab = train_bpe(golden_counts, 1000)
    enc, hf = vocab.encoder(), to_hf_tokenizer(vocab)
    for line in corpus["heldout_text"].splitlines(keepends=True) + ["end<|endoftext|>start"]:
        assert enc.encode(line) == hf.encode(line).ids


# ------------------------------------------------------------------------------------------------
# invariants (spec section 6, common to every tokenizer)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_vocab():
    text = (
        "the cat sat on the mat; the cats sat. 1999 and 2024 aaaa   spaces\n\n"
        "The quick brown fox jumps over the lazy dog! Pack my box with five dozen liquor jugs.\n"
    ) * 5
    return train_bpe(count_pieces(text), 330)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=60))
def test_roundtrip_unicode(small_vocab, text):
    enc = small_vocab.encoder()
    assert enc.decode(enc.encode(text)) == text
    assert enc.decode(enc.encode(text, allowed_special=False)) == text


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=60))
def test_roundtrip_bytes(small_vocab, data):
    enc = small_vocab.encoder()
    assert enc.decode_bytes(enc.encode_bytes(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "   \n\n\t ",
        "\r\n",
        "東京都 日本語",
        "🙂🙂 x",
        ENDOFTEXT,
        "a" + ENDOFTEXT * 2 + "b",
    ],
)
def test_roundtrip_edge_cases(small_vocab, text):
    enc = small_vocab.encoder()
    assert enc.decode(enc.encode(text)) == text


def test_unseen_characters_fall_back_to_bytes(small_vocab):
    enc = small_vocab.encoder()
    assert enc.encode("東") == list("東".encode())
    assert all(small_vocab.token_bytes[b] == bytes([b]) for b in range(256))


@settings(max_examples=60, deadline=None)
@given(a=st.text(max_size=20), b=st.text(max_size=20))
def test_special_token_is_atomic_and_local(small_vocab, a, b):
    enc = small_vocab.encoder()
    eot = small_vocab.special_tokens[ENDOFTEXT]
    assert enc.encode(a + ENDOFTEXT + b) == enc.encode(a) + [eot] + enc.encode(b)
    pieces = PreTokenizer().findall(a)
    assert enc.encode_ordinary(a) == [t for p in pieces for t in enc.encode_ordinary(p)]


def test_merges_concatenate_bytes_and_pair_counts_never_increase(small_vocab):
    for a, b, t in small_vocab.merges:
        assert small_vocab.token_bytes[t] == small_vocab.token_bytes[a] + small_vocab.token_bytes[b]
    counts = small_vocab.pair_counts
    assert all(x >= y for x, y in zip(counts, counts[1:]))
    assert small_vocab.vocab_size == 330


def test_save_load_roundtrip(tmp_path, small_vocab):
    path = tmp_path / "vocab.json"
    small_vocab.save(path)
    loaded = BpeVocab.load(path)
    assert loaded.merges == small_vocab.merges and loaded.token_bytes == small_vocab.token_bytes
    text = "the cats sat on 2024 mats<|endoftext|>"
    assert loaded.encoder().encode(text) == small_vocab.encoder().encode(text)


def test_training_is_deterministic():
    corpus = count_pieces("ab ab ba ab aab bba " * 7)
    assert train_bpe(corpus, 270).merges == train_bpe(dict(reversed(corpus.items())), 270).merges


def test_custom_pattern_and_no_special_tokens():
    pretok = PreTokenizer(r"\d|\D+", special_tokens=())
    vocab = train_bpe(count_pieces("1234 abc 1234 abc", pretok), 260, pretokenizer=pretok)
    assert vocab.special_tokens == {} and vocab.pattern != GPT2_PATTERN
    assert vocab.encoder().encode("12") == [ord("1"), ord("2")]  # digits never merge


def test_cache_eviction_keeps_results(small_vocab):
    enc = small_vocab.encoder(max_cache_entries=3)
    text = "the cat sat on the mat with many different words here"
    assert enc.encode(text) == small_vocab.encoder().encode(text)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="smaller than the 257 base ids"):
        train_bpe({"ab": 1}, 100)
    with pytest.raises(ValueError, match="byte_order"):
        BpeTrainer({"ab": 1}, byte_order="utf8")
    with pytest.raises(ValueError, match="semantics"):
        train_bpe({"ab": 1}, 258).encoder("longest")


def test_vocab_larger_than_corpus_stops_early():
    vocab = train_bpe({"abc": 2}, 1000)
    assert vocab.vocab_size == 259  # ab, abc: nothing left to merge
