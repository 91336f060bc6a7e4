"""Scaffold-BPE: golden case, a brute-force Algorithm 1/2, and the spec's invariants (section 6)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repro_core.bpe import ENDOFTEXT, PreTokenizer, count_pieces, piece_to_bytes, train_bpe
from repro_scaffold_bpe.scaffold import ScaffoldBpe, plain_bpe_as_scaffold, train_scaffold_bpe

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


@pytest.fixture(scope="module")
def golden_model(golden, golden_counts):
    return train_scaffold_bpe(golden_counts, golden[1]["vocab_size"])


# ------------------------------------------------------------------------------------------------
# brute force: Algorithm 1 with every count recomputed from the merged corpus at every step
# ------------------------------------------------------------------------------------------------


def naive_scaffold(piece_counts, vocab_size, n_special=1):
    """Returns (merges, scaffold set, events). f(x) and pair counts are recounted every iteration."""
    n_base = 256 + n_special
    words = [(list(piece_to_bytes(p)), c) for p, c in piece_counts.items() if c > 0]
    token_bytes = {i: bytes([i]) for i in range(256)}
    id_of = {b: i for i, b in token_bytes.items()}
    n_tokens = n_normal = n_base
    scaffold, merges, events = set(), [], []

    def recount():
        freq, pairs = Counter(), Counter()
        for w, c in words:
            for x in w:
                freq[x] += c
            for x, y in zip(w, w[1:]):
                pairs[(x, y)] += c
        return freq, pairs

    while n_normal < vocab_size:
        freq, pairs = recount()
        # queue entries: (-priority, kind, ids): a scaffold token (kind 0) beats a pair at equal priority
        queue = [(-c, 1, p) for p, c in pairs.items()] + [
            (-freq[s], 0, (s,)) for s in scaffold if freq[s] > 0
        ]
        if not queue:
            break
        neg_priority, kind, ids = min(queue)
        if kind == 0:
            scaffold.discard(ids[0])
            n_normal += 1
            events.append(["reactivate", ids[0], -neg_priority])
            continue
        a, b = ids
        joined = token_bytes[a] + token_bytes[b]
        assert joined not in id_of, "no duplicate merges expected in these corpora"
        t = n_tokens
        n_tokens += 1
        n_normal += 1
        token_bytes[t] = joined
        id_of[joined] = t
        merges.append((a, b, t))
        for k, (w, c) in enumerate(words):
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(t)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[k] = (out, c)
        freq, pairs = recount()
        q = max([*pairs.values(), *(freq[s] for s in scaffold if freq[s] > 0)], default=0)
        for c in sorted({a, b}):
            if c >= n_base and c not in scaffold and freq[c] < q:
                scaffold.add(c)
                n_normal -= 1
                events.append(["mark", c, freq[c], q])
    return merges, scaffold, events


def naive_scaffold_encode(text: str, model: ScaffoldBpe) -> list[int]:
    """Algorithm 2 literally: BPE over E (one lowest-rank merge at a time), then recursive demolish."""
    rank = {(a, b): (k, t) for k, (a, b, t) in enumerate(model.merges)}
    parent = {t: (a, b) for a, b, t in model.merges}
    scaffold = set(model.scaffold_ids)

    def demolish(t):
        return demolish(parent[t][0]) + demolish(parent[t][1]) if t in scaffold else [t]

    out = []
    for piece in PreTokenizer().pieces(text):
        syms = list(piece_to_bytes(piece))
        while True:
            hits = [(rank[p], i) for i, p in enumerate(zip(syms, syms[1:])) if p in rank]
            if not hits:
                break
            (_, t), i = min(hits)
            syms[i : i + 2] = [t]
        out += [model.model_id_of[x] for t in syms for x in demolish(t)]
    return out


words = st.text(alphabet="aabbcd é1 ", min_size=1, max_size=10)
corpora = st.dictionaries(words, st.integers(1, 20), min_size=1, max_size=25)


# ------------------------------------------------------------------------------------------------
# golden case N = 320 (reference conventions)
# ------------------------------------------------------------------------------------------------


@needs_golden
def test_golden_n320_training(golden, golden_model):
    expected = golden[1]["scaffold_bpe"]
    model = golden_model
    assert model.merges == [tuple(m) for m in expected["merges"]]
    assert model.applied_counts == expected["merge_applied_counts"]
    assert model.scaffold_ids == expected["scaffold_ids"]
    assert [model.token_bytes[s].decode("latin-1") for s in model.scaffold_ids] == expected[
        "scaffold_tokens_latin1"
    ]
    assert model.expanded_vocab_size == expected["expanded_vocab_size"]
    assert model.vocab_size == golden[1]["vocab_size"]
    assert model.normal_ids == expected["normal_ids_V"]
    assert {str(k): list(v) for k, v in model.demolish.items()} == expected["demolish"]
    assert model.events == expected["events"]
    assert sum(e[0] == "mark" for e in model.events) == expected["n_mark_events"]
    assert sum(e[0] == "reactivate" for e in model.events) == expected["n_reactivations"]


@needs_golden
@pytest.mark.parametrize(
    "semantics,key", [("merges", "scaffold"), ("token_rank", "scaffold_tokrank")]
)
def test_golden_n320_probe_encodings(golden, golden_model, semantics, key):
    corpus, case = golden
    expanded = golden_model.encoder(semantics, id_space="expanded")
    model = golden_model.encoder(semantics)
    for probe in case["probes"]:
        assert expanded.encode(probe["text"]) == probe[key]["ids"], probe["text"]
        assert model.encode(probe["text"]) == probe["scaffold"]["model_ids"], probe["text"]
        tokens = [t.encode("latin-1") for t in probe[key]["tokens_latin1"]]
        assert [model.decode_bytes([i]) for i in model.encode(probe["text"])] == tokens
    for split in ("train", "heldout"):
        n_tokens = len(model.encode(corpus[f"{split}_text"]))
        assert n_tokens == case["corpus_stats"][split]["scaffold"]["n_tokens"]


# ------------------------------------------------------------------------------------------------
# brute force
# ------------------------------------------------------------------------------------------------


@FAST
@given(corpus=corpora, extra=st.integers(1, 70))
def test_training_matches_bruteforce(corpus, extra):
    vocab_size = 257 + extra
    model = train_scaffold_bpe(corpus, vocab_size)
    merges, scaffold, events = naive_scaffold(corpus, vocab_size)
    assert model.merges == merges
    assert set(model.scaffold_ids) == scaffold
    assert model.events == events


@FAST
@given(corpus=corpora, extra=st.integers(1, 70), text=st.text(alphabet="aabbcdé1 x\n", max_size=30))
def test_encoding_matches_bruteforce(corpus, extra, text):
    model = train_scaffold_bpe(corpus, 257 + extra)
    assert model.encoder().encode(text) == naive_scaffold_encode(text, model)


@needs_golden
@pytest.mark.parametrize("vocab_size", [290, 360])
def test_golden_corpus_other_sizes_match_bruteforce(golden_counts, vocab_size):
    model = train_scaffold_bpe(golden_counts, vocab_size)
    merges, scaffold, events = naive_scaffold(golden_counts, vocab_size)
    assert (model.merges, set(model.scaffold_ids), model.events) == (merges, scaffold, events)


# ------------------------------------------------------------------------------------------------
# invariants (spec section 6, Scaffold-BPE 1-9)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[300, 420, 700])
def trained(request, golden_counts):
    return golden_counts, train_scaffold_bpe(golden_counts, request.param), request.param


@needs_golden
def test_sizes_and_pinned(trained):
    _, model, n = trained
    assert model.vocab_size == n
    assert model.expanded_vocab_size == n + len(model.scaffold_ids)
    assert not set(model.scaffold_ids) & set(range(257))
    assert model.normal_ids == sorted(
        set(range(model.expanded_vocab_size)) - set(model.scaffold_ids)
    )


@needs_golden
def test_merges_equal_plain_bpe_trained_to_expanded_size(trained):
    counts, model, n = trained
    assert train_bpe(counts, model.expanded_vocab_size).merges == model.merges
    plain = train_bpe(counts, n).merges
    assert model.merges[: len(plain)] == plain


@needs_golden
def test_popped_priorities_never_increase_and_marks_are_below_head(trained):
    _, model, _ = trained
    priorities = [p for _, _, p in model.history]
    assert all(x >= y for x, y in zip(priorities, priorities[1:]))
    assert all(f < q for kind, _, f, q in (e for e in model.events if e[0] == "mark"))


@needs_golden
def test_snapshot_prefix(golden_counts):
    small, large = train_scaffold_bpe(golden_counts, 330), train_scaffold_bpe(golden_counts, 450)
    assert large.merges[: len(small.merges)] == small.merges
    assert large.events[: len(small.events)] == small.events
    scaffold = set()
    for event in small.events:
        if event[0] == "mark":
            scaffold.add(event[1])
        elif event[0] == "reactivate":
            scaffold.discard(event[1])
    assert scaffold == set(small.scaffold_ids)


@needs_golden
def test_end_state_no_scaffold_token_above_last_priority(trained):
    counts, model, _ = trained
    corpus_tokens = Counter()  # f(t) in the final merged corpus = BPE over E of every piece
    enc = model.expanded.encoder()
    for piece, c in counts.items():
        for t in enc.encode_ordinary(piece):
            corpus_tokens[t] += c
    last_priority = model.history[-1][2]
    assert max((corpus_tokens[s] for s in model.scaffold_ids), default=0) <= last_priority


@needs_golden
def test_demolition_table(trained):
    _, model, _ = trained
    scaffold = set(model.scaffold_ids)
    parent = {t: (a, b) for a, b, t in model.merges}

    def recursive(t):
        return recursive(parent[t][0]) + recursive(parent[t][1]) if t in scaffold else (t,)

    for t in range(model.expanded_vocab_size):
        pieces = model.demolished(t)
        assert not set(pieces) & scaffold
        assert b"".join(model.token_bytes[x] for x in pieces) == model.token_bytes[t]
        assert pieces == recursive(t)
        if t not in scaffold:
            assert pieces == (t,)


@needs_golden
def test_encoding_is_demolished_bpe_over_expanded_vocab(golden, trained):
    _, model, _ = trained
    text = golden[0]["heldout_text"][:6000]
    bpe_e = model.expanded.encoder().encode(text)
    scaffold_e = model.encoder(id_space="expanded").encode(text)
    assert scaffold_e == [x for t in bpe_e for x in model.demolished(t)]
    assert not set(scaffold_e) & set(model.scaffold_ids)
    assert len(scaffold_e) >= len(bpe_e)
    assert model.encoder().encode(text) == [model.model_id_of[x] for x in scaffold_e]
    assert max(model.encoder().encode(text)) < model.vocab_size


def test_without_marks_scaffold_equals_bpe():
    counts = count_pieces("abcd abcd abce xyz " * 3)
    model = train_scaffold_bpe(counts, 258)  # one merge: nothing can be marked yet
    assert model.scaffold_ids == [] and model.merges == train_bpe(counts, 258).merges


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=60), data=st.binary(max_size=40))
def test_roundtrip(text, data):
    model = _roundtrip_model()
    enc = model.encoder()
    assert enc.decode(enc.encode(text)) == text
    assert enc.decode_bytes(enc.encode_bytes(data)) == data
    assert all(0 <= i < model.vocab_size for i in enc.encode(text))


_MODEL_CACHE: dict = {}


def _roundtrip_model() -> ScaffoldBpe:
    if "m" not in _MODEL_CACHE:
        text = "Arizona Arizonan zona connects, reinterpretations 1999 2024 aaaa   \n\n東京 🙂" * 4
        _MODEL_CACHE["m"] = train_scaffold_bpe(count_pieces(text), 320)
        assert _MODEL_CACHE["m"].scaffold_ids, "the round-trip model should have scaffold tokens"
    return _MODEL_CACHE["m"]


def test_special_token_is_atomic():
    model = _roundtrip_model()
    enc = model.encoder()
    eot = model.model_id_of[model.special_tokens[ENDOFTEXT]]
    assert enc.encode("zona" + ENDOFTEXT + "Arizona") == enc.encode("zona") + [eot] + enc.encode(
        "Arizona"
    )


def test_save_load_roundtrip(tmp_path):
    model = _roundtrip_model()
    model.save(tmp_path / "m.json")
    loaded = ScaffoldBpe.load(tmp_path / "m.json")
    assert (loaded.merges, loaded.scaffold_ids, loaded.demolish) == (
        model.merges,
        model.scaffold_ids,
        model.demolish,
    )
    text = "Arizonan zona 2024"
    assert loaded.encoder().encode(text) == model.encoder().encode(text)


def test_plain_bpe_container_has_no_scaffold():
    vocab = train_bpe(count_pieces("abab abab cdcd"), 260)
    model = plain_bpe_as_scaffold(vocab)
    assert model.scaffold_ids == [] and model.encoder().encode("abab") == vocab.encoder().encode(
        "abab"
    )


def test_vocab_size_below_base_is_an_error():
    with pytest.raises(ValueError, match="smaller than the 257 base ids"):
        train_scaffold_bpe({"ab": 1}, 256)
