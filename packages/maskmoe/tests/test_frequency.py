"""The frequency rule against brute-force references (sorting Python tuples)."""

import numpy as np
import pytest
from repro_maskmoe.frequency import count_tokens, frequency_buckets, frequent_tokens

COUNTS = np.array([0, 50, 7, 7, 120, 3, 7, 0, 1, 50, 9, 2], dtype=np.int64)
SPECIAL = [4]  # a very frequent special token (e.g. eos)


def brute_order(counts, special=(), special_frequent=False):
    """Eligible ids, most frequent first, ties by smaller id (a plain Python sort)."""
    ids = [i for i in range(len(counts)) if counts[i] > 0]
    if not special_frequent:
        ids = [i for i in ids if i not in special]
    return sorted(ids, key=lambda i: (-int(counts[i]), i))


def test_count_tokens_matches_a_python_counter_and_rejects_out_of_vocab_ids():
    tokens = np.array([[1, 2, 2], [5, 1, 2]])
    assert count_tokens(tokens, 7).tolist() == [0, 2, 3, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="vocabulary"):
        count_tokens(np.array([7]), 7)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_top_fraction_takes_the_most_frequent_types_with_ties_by_id(fraction):
    got = frequent_tokens(COUNTS, "top_fraction", fraction, SPECIAL)
    order = brute_order(COUNTS, SPECIAL)
    want = set(order[: int(round(fraction * len(COUNTS)))])
    assert set(np.flatnonzero(got).tolist()) == want
    assert not got[4] and not got[0] and not got[7]  # special and unseen ids are infrequent


def test_special_tokens_can_be_made_frequent_and_ties_break_by_id():
    got = frequent_tokens(COUNTS, "top_fraction", 3 / 12, SPECIAL, special_tokens_frequent=True)
    assert np.flatnonzero(got).tolist() == [1, 4, 9]
    # 7 occurs 3 times (ids 2, 3, 6): the top 6 keep the smaller ids 2 and 3, not 6
    got = frequent_tokens(COUNTS, "top_fraction", 5 / 12, SPECIAL)
    assert np.flatnonzero(got).tolist() == [1, 2, 3, 9, 10]


@pytest.mark.parametrize("threshold", [1, 3, 7, 51])
def test_min_count_rule(threshold):
    got = frequent_tokens(COUNTS, "min_count", threshold, SPECIAL)
    want = {i for i in brute_order(COUNTS, SPECIAL) if COUNTS[i] >= threshold}
    assert set(np.flatnonzero(got).tolist()) == want


@pytest.mark.parametrize("coverage", [0.0, 0.2, 0.5, 0.7, 0.99, 1.0])
def test_coverage_rule_is_the_smallest_prefix_covering_the_share(coverage):
    got = frequent_tokens(COUNTS, "coverage", coverage, SPECIAL)
    order, total = brute_order(COUNTS, SPECIAL), COUNTS.sum()
    want, covered = [], 0
    for i in order:  # add ids until the share of all occurrences reaches the threshold
        if covered / total >= coverage:
            break
        want.append(i)
        covered += COUNTS[i]
    assert set(np.flatnonzero(got).tolist()) == set(want)


def test_frequency_buckets_split_types_by_rank():
    counts = np.arange(100, 0, -1)  # id 0 most frequent
    buckets = frequency_buckets(counts, (0.05, 0.20))
    assert buckets[:5].tolist() == [0] * 5
    assert buckets[5:20].tolist() == [1] * 15
    assert set(buckets[20:].tolist()) == {2}


def test_training_counts_come_from_the_train_split_only_and_respect_max_train_tokens(
    tmp_path, monkeypatch
):
    from collections import Counter

    from repro_core.config import DataConfig
    from repro_core.data import get_tokenizer, resolve_corpus, tokenize_corpus
    from repro_maskmoe.frequency import load_token_counts, training_token_counts_file

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "train.txt").write_text("the cat sat on the mat\nthe dog sat\n" * 40)
    (corpus_dir / "valid.txt").write_text("zebras quixotically juggle xylophones\n" * 5)
    corpus = resolve_corpus(str(corpus_dir))
    tokenizer = get_tokenizer("bpe:300", corpus)
    train = np.asarray(tokenize_corpus(corpus, tokenizer)["train"].tokens)
    for limit in (0, 50):
        cfg = DataConfig(corpus=str(corpus_dir), tokenizer="bpe:300", max_train_tokens=limit)
        counts, special = load_token_counts(training_token_counts_file(cfg, tokenizer))
        expected = Counter((train[:limit] if limit else train).tolist())
        assert counts.tolist() == [expected.get(i, 0) for i in range(len(tokenizer))]
        assert special.tolist() == sorted(tokenizer.all_special_ids)
    zebra = tokenizer("zebras", add_special_tokens=False)["input_ids"]
    assert any(counts[i] == 0 for i in zebra)  # validation-only text is not counted
