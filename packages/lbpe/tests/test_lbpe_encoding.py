"""LBPE encoding: the golden case, brute-force references, and the spec's invariants (section 6)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repro_core.bpe import BpeVocab, PreTokenizer, count_pieces, piece_to_bytes, train_bpe
from repro_lbpe import LbpeEncoder, TokenVocabulary

DATA_DIR = os.environ.get("REPRO_DATA_DIR")
GOLDEN_DIR = Path(DATA_DIR or "/nonexistent") / "reference" / "bpe"
needs_golden = pytest.mark.skipif(
    not (GOLDEN_DIR / "case_N320.json").is_file(),
    reason=f"golden BPE data not found: set REPRO_DATA_DIR (now {DATA_DIR!r}) to the shared data folder",
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------
# references, written from the definitions (pure Python, no trie, no kernel)
# ------------------------------------------------------------------------------------------------


def lbpe_recursive(piece: bytes, id_of: dict[bytes, int], tie: str) -> list[int]:
    """Spec 2.3: take the longest vocabulary token occurring in `piece` (ties: leftmost, or lower
    rank then leftmost), split there, recurse left and right. Brute force over all substrings."""
    if not piece:
        return []
    best = None
    for start in range(len(piece)):
        for end in range(start + 1, len(piece) + 1):
            t = id_of.get(piece[start:end])
            if t is None:
                continue
            key = (-(end - start), start) if tie == "leftmost" else (-(end - start), t, start)
            if best is None or key < best[0]:
                best = (key, start, end, t)
    _, start, end, t = best
    return lbpe_recursive(piece[:start], id_of, tie) + [t] + lbpe_recursive(piece[end:], id_of, tie)


def lbpe_sorted_candidates(piece: bytes, id_of: dict[bytes, int], tie: str) -> list[int]:
    """Spec 2.3, global form: all occurrences sorted by (-len, start) or (-len, rank, start),
    accepted greedily when they overlap no accepted one."""
    occ = [
        (s, e, id_of[piece[s:e]])
        for s in range(len(piece))
        for e in range(s + 1, len(piece) + 1)
        if piece[s:e] in id_of
    ]
    occ.sort(
        key=lambda o: (-(o[1] - o[0]), o[0]) if tie == "leftmost" else (-(o[1] - o[0]), o[2], o[0])
    )
    taken = [None] * len(piece)
    for s, e, t in occ:
        if all(x is None for x in taken[s:e]):
            taken[s:e] = [(s, t)] * (e - s)
    out, seen = [], set()
    for cell in taken:
        if cell not in seen:
            seen.add(cell)
            out.append(cell[1])
    return out


def token_ids(vocab: BpeVocab) -> dict[bytes, int]:
    specials = set(vocab.special_tokens.values())
    return {b: i for i, b in enumerate(vocab.token_bytes) if i not in specials}


def encode_with_reference(text: str, vocab: BpeVocab, tie: str) -> list[int]:
    id_of = token_ids(vocab)
    return [
        t
        for p in PreTokenizer().pieces(text)
        for t in lbpe_recursive(piece_to_bytes(p), id_of, tie)
    ]


# ------------------------------------------------------------------------------------------------
# golden case (reference/bpe/case_N320.json, rank tie rule)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden():
    corpus = json.loads((GOLDEN_DIR / "corpus.json").read_text(encoding="utf-8"))
    case = json.loads((GOLDEN_DIR / "case_N320.json").read_text(encoding="utf-8"))
    vocab = train_bpe(count_pieces(corpus["train_text"], PreTokenizer()), case["vocab_size"])
    return corpus, case, TokenVocabulary.from_bpe_vocab(vocab)


@needs_golden
@pytest.mark.parametrize(
    "name, reading, tie",
    [
        ("lbpe_b", "b", "rank"),
        ("lbpe_a", "a", "rank"),
        ("lbpe_a_rules", "a_rules", "rank"),
        ("bpe", "bpe", "rank"),
    ],
)
def test_golden_probe_encodings_match_exactly(golden, name, reading, tie):
    _, case, vocab = golden
    enc = LbpeEncoder(vocab, reading, tie)
    for probe in case["probes"]:
        assert enc.encode(probe["text"]) == probe[name]["ids"], (name, probe["text"])


@needs_golden
@pytest.mark.parametrize(
    "name, reading", [("lbpe_b", "b"), ("lbpe_a", "a"), ("lbpe_a_rules", "a_rules")]
)
def test_golden_heldout_statistics_match(golden, name, reading):
    corpus, case, vocab = golden
    enc = LbpeEncoder(vocab, reading, "rank")
    ids = enc.encode(corpus["heldout_text"])
    stats = case["corpus_stats"]["heldout"][name]
    assert len(ids) == stats["n_tokens"]
    by_len: dict[str, int] = {}
    for i in ids:
        key = str(len(vocab.output_token_bytes[i]))
        by_len[key] = by_len.get(key, 0) + 1
    assert by_len == stats["token_count_by_byte_length"]


# ------------------------------------------------------------------------------------------------
# differential tests on random BPE vocabularies
# ------------------------------------------------------------------------------------------------

ALPHABET = "ab c\u00e9\n"
texts = st.text(alphabet=ALPHABET, min_size=1, max_size=300)


def small_vocab(corpus_text: str, extra: int) -> BpeVocab:
    counts = count_pieces(corpus_text, PreTokenizer())
    return train_bpe(counts, 257 + extra)


@FAST
@given(
    corpus_text=texts, text=st.text(alphabet=ALPHABET + "d", max_size=120), extra=st.integers(1, 40)
)
def test_kernel_equals_recursive_and_sorted_candidate_references(corpus_text, text, extra):
    vocab = small_vocab(corpus_text, extra)
    tv = TokenVocabulary.from_bpe_vocab(vocab)
    id_of = token_ids(vocab)
    for tie in ("leftmost", "rank"):
        enc = LbpeEncoder(tv, "b", tie)
        for piece in PreTokenizer().pieces(text):
            raw = piece_to_bytes(piece)
            expected = lbpe_recursive(raw, id_of, tie)
            assert lbpe_sorted_candidates(raw, id_of, tie) == expected
            assert list(enc.encode_pieces_uncached([raw])[0]) == expected, (piece, tie)


@FAST
@given(corpus_text=texts, extra=st.integers(1, 40))
def test_every_vocabulary_token_as_a_piece_encodes_to_itself(corpus_text, extra):
    vocab = small_vocab(corpus_text, extra)
    enc = LbpeEncoder(TokenVocabulary.from_bpe_vocab(vocab), "b")
    specials = set(vocab.special_tokens.values())
    tokens = [(i, b) for i, b in enumerate(vocab.token_bytes) if i not in specials]
    out = enc.encode_pieces_uncached([b for _, b in tokens])
    assert [list(o) for o in out] == [[i] for i, _ in tokens]


@FAST
@given(corpus_text=texts, text=st.text(alphabet=ALPHABET, max_size=120), extra=st.integers(1, 40))
def test_longest_output_token_is_the_longest_vocabulary_substring(corpus_text, text, extra):
    vocab = small_vocab(corpus_text, extra)
    enc = LbpeEncoder(TokenVocabulary.from_bpe_vocab(vocab), "b")
    id_of = token_ids(vocab)
    for piece in PreTokenizer().pieces(text):
        raw = piece_to_bytes(piece)
        longest_sub = max(
            e - s for s in range(len(raw)) for e in range(s + 1, len(raw) + 1) if raw[s:e] in id_of
        )
        out = enc.encode_pieces_uncached([raw])[0]
        assert max(len(vocab.token_bytes[i]) for i in out) == longest_sub


@FAST
@given(data=st.binary(max_size=200), reading=st.sampled_from(["b", "a", "a_rules", "bpe"]))
def test_any_byte_string_round_trips(golden_like_vocab, data, reading):
    enc = LbpeEncoder(golden_like_vocab, reading)
    assert enc.decode_bytes(enc.encode_bytes(data)) == data


@pytest.fixture(scope="module")
def golden_like_vocab():
    text = "the there then other another brother mother 1999 19999 café naïve 東京 🙂 \r\n  x" * 20
    return TokenVocabulary.from_bpe_vocab(small_vocab(text, 120))


def test_special_tokens_are_atomic_and_never_merged(golden_like_vocab):
    enc = LbpeEncoder(golden_like_vocab, "b")
    a, b = "the other<|endoftext", "|>mother"
    assert enc.encode(a + "<|endoftext|>" + b) == enc.encode(a) + [256] + enc.encode(b)
    assert 256 not in enc.encode("<|endoftext|>", allowed_special=False)


def test_vocabulary_and_ids_are_those_of_bpe(golden_like_vocab):
    """LBPE keeps BPE's vocabulary: every id decodes to the same bytes, and both encodings of any
    text decode to the text."""
    lbpe, bpe = LbpeEncoder(golden_like_vocab, "b"), LbpeEncoder(golden_like_vocab, "bpe")
    assert lbpe.output_token_bytes == bpe.output_token_bytes == golden_like_vocab.token_bytes
    text = "another brother's 19999 mothers"
    assert lbpe.decode(lbpe.encode(text)) == bpe.decode(bpe.encode(text)) == text


# ------------------------------------------------------------------------------------------------
# spec 2.3 counterexample: LBPE can be longer than BPE (never test LBPE <= BPE)
# ------------------------------------------------------------------------------------------------


def counterexample_vocab() -> BpeVocab:
    """Merges (rank order) such that ' mindations' is [' mind', 'ations'] under BPE."""
    names = {}
    merges = []
    tokens = [bytes([b]) for b in range(256)] + [b"<|endoftext|>"]

    def tid(s: str) -> int:
        return names.get(s, s.encode()[0] if len(s.encode()) == 1 else None)

    for a, b in [(" ", "m"), ("i", "n"), ("in", "d"), (" m", "ind"), ("a", "t"), ("at", "i"),
                 ("o", "n"), ("ati", "on"), ("ation", "s"), ("ind", "ation")]:  # fmt: skip
        new = len(tokens)
        merges.append((tid(a), tid(b), new))
        tokens.append((a + b).encode())
        names[a + b] = new
    return BpeVocab(merges)


def test_lbpe_can_be_longer_than_bpe_counterexample():
    vocab = counterexample_vocab()
    tv = TokenVocabulary.from_bpe_vocab(vocab)
    decode = [vocab.token_bytes[i] for i in LbpeEncoder(tv, "bpe").encode(" mindations")]
    assert decode == [b" mind", b"ations"]
    lbpe = [vocab.token_bytes[i] for i in LbpeEncoder(tv, "b").encode(" mindations")]
    assert lbpe == [b" m", b"indation", b"s"]
    assert len(lbpe) > len(decode)
    assert LbpeEncoder(tv, "b").encode(" mindations") == encode_with_reference(
        " mindations", vocab, "leftmost"
    )


# ------------------------------------------------------------------------------------------------
# Scaffold-BPE vocabularies
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scaffold_model():
    scaffold = pytest.importorskip("repro_scaffold_bpe.scaffold")
    text = (
        "Arizona zona Arizonan Californians reinterpretations uncovered " * 30
        + "the then there " * 50
    )
    return scaffold.train_scaffold_bpe(count_pieces(text, PreTokenizer()), 300)


def test_scaffold_bpe_reading_equals_the_scaffold_package_encoder(scaffold_model):
    assert scaffold_model.scaffold_ids, "the fixture must have scaffold tokens"
    ours = LbpeEncoder(TokenVocabulary.from_scaffold(scaffold_model, "over_e"), "bpe")
    text = "Arizona zona Arizonan Californian reinterpretation the there"
    assert ours.encode(text) == scaffold_model.encoder().encode(text)


def test_lbpe_over_e_is_lbpe_then_demolition(scaffold_model):
    """LBPE over E then demolish == the recursive reference over E's token set, each token demolished."""
    enc = LbpeEncoder(TokenVocabulary.from_scaffold(scaffold_model, "over_e"), "b")
    specials = set(scaffold_model.special_tokens.values())
    id_of = {b: i for i, b in enumerate(scaffold_model.token_bytes) if i not in specials}
    text = "Arizonans zona Californian reinterpretations thenthere"
    expected = [
        scaffold_model.model_id_of[x]
        for p in PreTokenizer().pieces(text)
        for t in lbpe_recursive(piece_to_bytes(p), id_of, "leftmost")
        for x in scaffold_model.demolished(t)
    ]
    assert enc.encode(text) == expected
    assert max(expected) < scaffold_model.vocab_size  # model ids only: no scaffold token survives


def test_lbpe_over_v_uses_normal_tokens_only(scaffold_model):
    enc = LbpeEncoder(TokenVocabulary.from_scaffold(scaffold_model, "over_v"), "b")
    normal = scaffold_model.model_token_bytes
    id_of = {b: i for i, b in enumerate(normal) if i != 256}
    text = "Arizonans zona Californian reinterpretations"
    expected = [
        t
        for p in PreTokenizer().pieces(text)
        for t in lbpe_recursive(piece_to_bytes(p), id_of, "leftmost")
    ]
    assert enc.encode(text) == expected
    with pytest.raises(ValueError, match="needs merge rules"):
        LbpeEncoder(TokenVocabulary.from_scaffold(scaffold_model, "over_v"), "bpe")


def test_reading_a_can_split_an_in_vocabulary_pre_token_that_reading_b_keeps_whole():
    """Spec 2.3: A grows the best pair greedily and can block the path to ' there'; B cannot."""
    names: dict[str, int] = {}
    merges = []
    for a, b in [
        ("e", "r"),
        ("h", "e"),
        (" ", "t"),
        ("er", "e"),
        (" t", "he"),
        ("r", "e"),
        (" the", "re"),
    ]:
        new = 257 + len(merges)
        merges.append(
            (
                names.get(a, ord(a[0]) if len(a) == 1 else -1),
                names.get(b, ord(b[0]) if len(b) == 1 else -1),
                new,
            )
        )
        names[a + b] = new
    tv = TokenVocabulary.from_bpe_vocab(BpeVocab(merges))
    spell = lambda ids: [tv.token_bytes[i] for i in ids]  # noqa: E731
    assert spell(LbpeEncoder(tv, "b").encode(" there")) == [b" there"]
    assert spell(LbpeEncoder(tv, "a").encode(" there")) == [b" t", b"h", b"ere"]
    assert spell(LbpeEncoder(tv, "a_rules").encode(" there")) == [b" t", b"h", b"ere"]
