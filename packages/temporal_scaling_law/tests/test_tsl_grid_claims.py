"""The reproduction grid's claims on hand-made per-run fits (no training): the methods fitted on
the same runs become per-seed records (analysis.derive) judged by repro_core.claims against the
best baseline, the trivial last value included."""

import math

import pytest
from repro_core.experiment import judge_results
from repro_temporal_scaling_law import reproduce as rep
from repro_temporal_scaling_law.analysis import METHODS, WINDOWS, derive
from repro_temporal_scaling_law.grid_report import sections, stats

WEIGHTS = (0.2, 0.4, 0.6, 0.8)
TRUE_FINAL = {0.2: 4.0, 0.4: 3.8, 0.6: 3.6, 0.8: 3.7}  # w = 0.6 is best


def fake_run(arm: str, seed: int, mape: dict, predicted_final: dict, final: float) -> dict:
    fits = {
        w: {
            "methods": {
                m: {"mape": mape[m], "r2": 0.5, "rmse": 0.1, "predicted_final": predicted_final[m]}
                for m in METHODS
            },
            "errors": {},
        }
        for w in WINDOWS
    }
    metrics = {"final_loss": final, "model": "m", "num_checkpoints": 5, "fits": fits,
               "stage1_r2": {"steps": [10, 20], "r2": [0.1, 0.7]},
               "window_steps": {w: [10, 20] for w in WINDOWS}}  # fmt: skip
    return {"arm": arm, "setting": "", "seed": seed, "metrics": metrics}


def fake_results(tsl_main_mape=lambda seed: 1.0 + 0.01 * seed) -> dict:
    runs = []
    for seed in (0, 1, 2):
        mape = {m: 5.0 + seed for m in METHODS} | {"last_value": 3.0 + 0.1 * seed}
        main_mape = mape | {"tsl": tsl_main_mape(seed), "tsl_a2_power": 4.0}
        runs.append(fake_run("main", seed, main_mape, dict.fromkeys(METHODS, 3.0), 3.5))
        for w in WEIGHTS:
            # last value and tsl both rank the mixtures exactly; the others predict the reverse
            predicted = {m: -TRUE_FINAL[w] for m in METHODS}
            predicted |= {"last_value": TRUE_FINAL[w] + 0.3, "tsl": TRUE_FINAL[w] + seed * 0.01}
            runs.append(fake_run(f"mix-a{w:.2f}", seed, mape, predicted, TRUE_FINAL[w]))
    return {"runs": runs, "grid": {"settings": {"": []}}}


def claim(results: dict, metric: str, method: str) -> dict:
    return next(c for c in results["claims"] if c["metric"] == metric and c["method"] == method)


def test_the_law_is_compared_with_the_best_baseline_paired_by_seed():
    results = fake_results()
    judge_results(rep.GRID, rep.CLAIMS, results)
    main = claim(results, "mape_main", "tsl")
    assert [r["setting"] for r in main["rows"]] == list(WINDOWS)
    for row in main["rows"]:
        assert row["baseline_arm"] == "last_value"  # the trivial one is the best here
        assert row["test"] == "paired" and row["n_pairs"] == 3
        assert row["diff"] == pytest.approx(1.01 - 3.1)
    assert main["verdict"] == "reproduced"
    # worse than last value on the main runs (4.0 vs 3.0-3.2): contradicted
    assert claim(results, "mape_main", "tsl_a2_power")["verdict"] == "contradicted"


def test_a_mixture_ranking_that_last_value_matches_is_not_reproduced():
    results = fake_results()
    judge_results(rep.GRID, rep.CLAIMS, results)
    selection = claim(results, "spearman", "tsl")
    for row in selection["rows"]:
        assert row["method"]["mean"] == pytest.approx(1.0)  # a perfect ranking ...
        assert row["baseline_arm"] == "last_value"  # ... that last value gives too
    assert selection["verdict"] != "reproduced"
    records = [d for d in results["derived"] if d["arm"] == "power_law"]
    assert all(d["metrics"]["spearman"] == pytest.approx(-1.0) for d in records)
    assert all(d["metrics"]["regret"] == pytest.approx(0.4) for d in records)  # picks w = 0.2


def test_a_failed_fit_is_reported_not_dropped():
    results = fake_results(lambda seed: math.nan if seed == 1 else 1.0)
    judge_results(rep.GRID, rep.CLAIMS, results)
    main = claim(results, "mape_main", "tsl")
    assert main["verdict"] == "diverged"
    assert all(r["nonfinite_seeds"]["method"] == [1] for r in main["rows"])
    assert stats([1.0, math.nan, 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 1)  # sample std
    text = "\n".join(sections(results))
    assert "(1 failed)" in text and "## Mixture selection" in text


def test_derive_needs_no_mixtures_and_no_main_run():
    results = fake_results()
    results["runs"] = [r for r in results["runs"] if r["arm"] == "main"]
    records = derive(results)
    assert len(records) == 3 * len(WINDOWS) * len(METHODS)
    assert set(records[0]["metrics"]) == {"mape_main"}
