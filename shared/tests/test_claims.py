"""The one verdict rule (repro_core.claims) on synthetic per-seed data with known answers."""

import math

import numpy as np
import pytest
from repro_core.claims import Claim, compare, judge

SEEDS = (0, 1, 2, 3, 4)


def arm(values, seeds=SEEDS):
    return dict(zip(seeds, values))


def claim(**kw):
    base = dict(text='"x"', metric="loss", method="m", baseline="b", lower_is_better=True)
    return Claim(**(base | kw))


def judged(c, method, baseline, setting=""):
    return judge(c, {("m", setting): method, ("b", setting): baseline}, [setting])


def noisy(mean, seed=0, sd=0.1, n=5):
    return list(mean + sd * np.random.default_rng(seed).standard_normal(n))


def test_identical_arms_are_not_at_this_scale():
    v = noisy(3.0)
    out = judged(claim(), arm(v), arm(v))
    assert out["verdict"] == "not at this scale"
    assert out["rows"][0]["diff"] == 0 and out["rows"][0]["p"] == 1.0


def test_five_sigma_improvement_is_reproduced_and_its_opposite_contradicted():
    base = noisy(3.0, seed=1)
    # paired differences with mean -0.5 and sd 0.1: far beyond the CI of 5 seeds
    better = [b - 0.5 + d for b, d in zip(base, noisy(0.0, seed=2, sd=0.1))]
    worse = [b + 0.5 + d for b, d in zip(base, noisy(0.0, seed=3, sd=0.1))]
    assert judged(claim(), arm(better), arm(base))["verdict"] == "reproduced"
    assert judged(claim(), arm(worse), arm(base))["verdict"] == "contradicted"
    # the direction of the metric flips the meaning
    assert judged(claim(lower_is_better=False), arm(better), arm(base))["verdict"] == "contradicted"


def test_paired_ci_matches_the_t_formula_written_out():
    m, b = [1.0, 2.0, 4.0], [0.5, 1.0, 2.5]
    row = compare(arm(m, (0, 1, 2)), arm(b, (0, 1, 2)))
    d = np.array(m) - np.array(b)  # 0.5, 1.0, 1.5
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert row["test"] == "paired" and row["n_pairs"] == 3
    assert row["diff"] == pytest.approx(1.0)
    assert row["ci_low"] == pytest.approx(1.0 - half) and row["ci_high"] == pytest.approx(
        1.0 + half
    )
    # t = 1 / (0.5 / sqrt 3) = 3.4641, two-sided p with 2 df
    assert row["p"] == pytest.approx(0.07417990022744858, rel=1e-9)


def test_pairing_removes_the_shared_seed_effect():
    # seed effects of +-1 hide a constant 0.05 improvement from Welch, not from the pairing
    seed_effect = [1.0, -1.0, 0.5, -0.5, 0.0]
    base = [3.0 + e for e in seed_effect]
    method = [x - 0.05 + 0.001 * i for i, x in enumerate(base)]
    assert compare(arm(method), arm(base))["test"] == "paired"
    assert judged(claim(), arm(method), arm(base))["verdict"] == "reproduced"
    unpaired = compare(arm(method, (10, 11, 12, 13, 14)), arm(base))
    assert unpaired["test"] == "welch" and unpaired["ci_low"] < 0 < unpaired["ci_high"]


def test_welch_when_seeds_differ():
    row = compare(arm([1.0, 1.2, 1.1], (0, 1, 2)), arm([2.0, 2.5, 2.2, 2.4], (5, 6, 7, 8)))
    assert row["test"] == "welch" and row["n_pairs"] == 0
    assert row["diff"] == pytest.approx(1.1 - 2.275)
    assert row["ci_high"] < 0


def test_equivalence_inside_and_outside_the_margin():
    base = noisy(3.0, seed=4)
    tiny_shift = [b + 0.001 + d for b, d in zip(base, noisy(0.0, seed=5, sd=0.002))]
    big_shift = [b + 0.5 + d for b, d in zip(base, noisy(0.0, seed=6, sd=0.002))]
    wide = [b + d for b, d in zip(base, noisy(0.0, seed=7, sd=0.2))]
    matches = claim(kind="matches", margin=0.05)
    assert judged(matches, arm(tiny_shift), arm(base))["verdict"] == "reproduced"
    assert judged(matches, arm(big_shift), arm(base))["verdict"] == "contradicted"
    assert judged(matches, arm(wide), arm(base))["verdict"] == "not at this scale"
    no_worse = claim(kind="no_worse", margin=0.05)
    better = [b - 0.5 + d for b, d in zip(base, noisy(0.0, seed=8, sd=0.002))]
    assert judged(no_worse, arm(better), arm(base))["verdict"] == "reproduced"
    assert judged(no_worse, arm(big_shift), arm(base))["verdict"] == "contradicted"


def test_margin_is_required_for_equivalence_and_refused_for_better():
    with pytest.raises(ValueError, match="margin"):
        claim(kind="matches")
    with pytest.raises(ValueError, match="margin"):
        claim(margin=0.1)


def test_signs_disagreeing_across_settings_give_mixed():
    base = noisy(3.0, seed=9)
    better = [b - 0.5 + d for b, d in zip(base, noisy(0.0, seed=10, sd=0.05))]
    worse = [b + 0.5 + d for b, d in zip(base, noisy(0.0, seed=11, sd=0.05))]
    values = {
        ("m", "V1k"): arm(better), ("b", "V1k"): arm(base),
        ("m", "V4k"): arm(worse), ("b", "V4k"): arm(base),
    }  # fmt: skip
    out = judge(claim(), values, ["V1k", "V4k"])
    assert [r["verdict"] for r in out["rows"]] == ["reproduced", "contradicted"]
    assert out["verdict"] == "mixed"
    values[("m", "V4k")] = arm([b - 0.4 for b in base])
    assert judge(claim(), values, ["V1k", "V4k"])["verdict"] == "reproduced"


def test_two_seeds_are_too_few_for_a_verdict():
    out = judged(claim(), arm([1.0, 1.1], (0, 1)), arm([9.0, 9.1], (0, 1)))
    assert out["verdict"] == "too few seeds"
    assert out["rows"][0]["test"] is None


def test_a_diverged_seed_is_reported_not_dropped():
    method = arm([2.0, 2.1, float("nan"), 2.05, 2.02])
    out = judged(claim(), method, arm(noisy(3.0)))
    assert out["verdict"] == "diverged"
    assert out["rows"][0]["nonfinite_seeds"]["method"] == [2]
    assert out["rows"][0]["method"]["n"] == 5


def test_several_baselines_compare_with_the_best_one():
    values = {
        ("m", ""): arm([2.0, 2.1, 2.05]),
        ("b", ""): arm([3.0, 3.1, 3.05]),
        ("last_value", ""): arm([1.9, 2.0, 1.95]),  # a trivial baseline that wins
    }
    out = judge(claim(baseline=("b", "last_value")), values, [""])
    assert out["rows"][0]["baseline_arm"] == "last_value"
    assert out["verdict"] == "contradicted"


def test_a_baseline_without_runs_is_named_not_run_and_the_others_are_judged():
    from repro_core.report import claims_table

    values = {("m", ""): arm([2.0, 2.1, 2.05]), ("b", ""): arm([3.0, 3.1, 3.05])}
    out = judge(claim(baseline=("b", "not_yet")), values, [""])
    assert out["rows"][0]["baseline_arm"] == "b" and out["rows"][0]["not_run"] == ["not_yet"]
    assert out["verdict"] == "reproduced"
    results = {"claims": [out], "metrics": [{"key": "loss", "digits": 3}]}
    assert "best of b/not_yet: b (not_yet: not run)" in claims_table(results)
    everything_ran = judge(claim(baseline=("b",)), values, [""])
    assert "not_run" not in everything_ran["rows"][0]


def test_a_missing_arm_is_too_few_seeds():
    out = judge(claim(), {("m", ""): arm([1.0, 2.0, 3.0])}, [""])
    assert out["verdict"] == "too few seeds" and out["rows"][0]["missing_arms"] == ["b"]


@pytest.mark.parametrize("df", [1, 2, 3.7, 4, 9, 30, 200])
def test_student_t_tails_and_quantiles_agree_with_scipy(df):
    stats = pytest.importorskip("scipy.stats")
    from repro_core.claims import _t_quantile, _t_two_sided_p

    for t in (0.0, 0.3, 1.0, 2.5, 7.0, 40.0):
        assert _t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9, abs=1e-15)
    assert _t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-10)
