"""`repro-budget` against curves whose answer is computed by hand or in closed form.

Each test writes a synthetic run directory shaped as the core Trainer writes it (``config.yaml``
with ``train.max_steps``, ``metrics.jsonl`` with training rows carrying ``tokens_per_second`` and
eval rows carrying ``val_loss``) and checks the step the rule picks.
"""

from __future__ import annotations

import json
import math

import pytest
from repro_core.budget import find_budget, grid_time, main, read_run


def write_run(path, curve, max_steps, tokens_per_second=1000.0, tokens_per_step=2048, extra=""):
    """``curve``: {step: val_loss}; a training row every 10 steps."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(
        f"train:\n  max_steps: {max_steps}\n  min_lr_ratio: 1.0\n{extra}"
    )
    rows = []
    last = max(curve)
    for step in range(10, last + 1, 10):
        rows.append({"loss": 3.0, "step": step, "tokens_seen": step * tokens_per_step,
                     "tokens_per_second": tokens_per_second})  # fmt: skip
        if step in curve:
            rows.append({"step": step, "val_loss": curve[step], "val_perplexity": 1.0})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------------------------
# The rule on hand-computed curves


def plateau_curve(knee=1200, total=3000, every=100):
    """Linear descent 5.0 -> 2.6 until ``knee``, flat after: windows starting at or after the
    knee improve 0%, the last one before it (s = 1100, 2.8 -> 2.6) improves 7.1%."""
    return {s: 5.0 - 0.002 * min(s, knee) for s in range(every, total + 1, every)}


def test_a_curve_that_flattens_at_step_1200_gives_budget_1200():
    curve = plateau_curve()
    steps = sorted(curve)
    found = find_budget(steps, [curve[s] for s in steps], 3000)
    assert found["budget"] == 1200
    assert found["first_crossing"] == 1200
    row = {r["step"]: r for r in found["rows"]}
    assert row[1100]["end"] == 1400
    assert row[1100]["improvement"] == pytest.approx((2.8 - 2.6) / 2.8)
    assert row[1200]["improvement"] == pytest.approx(0.0, abs=1e-12)


def test_the_last_window_is_not_judged_and_bounds_the_answer():
    curve = plateau_curve()
    steps = sorted(curve)
    found = find_budget(steps, [curve[s] for s in steps], 3000)
    row = {r["step"]: r for r in found["rows"]}
    # s + 300 > 3000 for s > 2700: no window, never the budget
    assert [s for s, r in row.items() if r["end"] is None] == [2800, 2900, 3000]
    assert found["last_judged"] == 2700


def test_geometric_decay_gives_the_closed_form_step():
    # L(s) = a + b q^s: r(s) = b q^s (1 - q^w) / (a + b q^s) falls with s, and r(s*) = c at
    # q^s* = c a / (b (1 - q^w - c)); the answer is the first eval point at or after s*.
    a, b, q, w, c, every, total = 2.0, 3.0, math.exp(-1 / 400), 300, 0.01, 100, 3000
    s_star = math.log(c * a / (b * (1 - q**w - c))) / math.log(q)
    expected = math.ceil(s_star / every) * every
    assert 0 < s_star < total - w and s_star % every > 1  # not at a tie
    steps = list(range(every, total + 1, every))
    found = find_budget(steps, [a + b * q**s for s in steps], total, threshold=c)
    assert found["budget"] == expected == found["first_crossing"]
    # by hand: q^w = e^-0.75 = 0.4724, q^s* = 0.02 / (3 x 0.5176) = 0.01288, s* = 400 x 4.352 = 1741
    assert expected == 1800


def test_a_curve_that_never_flattens_is_not_reached(tmp_path, capsys):
    curve = {s: 5.0 - 0.001 * s for s in range(100, 3001, 100)}  # r >= 0.3 / 5 = 6% everywhere
    steps = sorted(curve)
    found = find_budget(steps, [curve[s] for s in steps], 3000)
    assert found["budget"] is None and found["first_crossing"] is None
    run = write_run(tmp_path / "run", curve, 3000)
    code, out, _ = run_cli([str(run)], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("budget: not reached")
    assert "train longer" in out.splitlines()[0]
    # 2048 tokens/step at 1000 tokens/s; 4 runs on 2 workers = 2 waves: 5400 / 4.096 = 1318
    code, out, _ = run_cli([str(run), "--arms", "2", "--seeds", "2"], capsys)
    assert "fits 1318 steps in 90 minutes (2.048 s/step)" in out.splitlines()[0]


def test_a_temporary_flat_stretch_is_not_the_budget_but_is_reported():
    # flat from 400 to 800 (windows at 400, 500 see 0%), then a second descent to 1500, then flat
    curve = {}
    for s in range(100, 3001, 100):
        if s <= 400:
            curve[s] = 5.0 - 0.002 * s
        elif s <= 800:
            curve[s] = 4.2
        else:
            curve[s] = 4.2 - 0.002 * (min(s, 1500) - 800)
    steps = sorted(curve)
    found = find_budget(steps, [curve[s] for s in steps], 3000)
    assert found["first_crossing"] == 400
    assert found["budget"] == 1500


def test_a_window_end_off_the_eval_grid_uses_the_next_eval_point():
    # T = 1000, w = 100, eval every 70: the window of s = 70 ends at 210 (first point >= 170)
    steps = list(range(70, 1000, 70)) + [1000]
    losses = [10.0 / s for s in steps]
    found = find_budget(steps, losses, 1000)
    row = {r["step"]: r for r in found["rows"]}
    assert row[70]["end"] == 210
    assert row[70]["improvement"] == pytest.approx(1 - 70 / 210)
    assert row[840]["end"] == 980 and row[910]["end"] is None


def test_a_rising_loss_counts_as_not_improving():
    steps = list(range(100, 1001, 100))
    losses = [3.0, 2.5, 2.2, 2.0, 2.0, 2.05, 2.1, 2.15, 2.2, 2.25]  # overfitting after 500
    found = find_budget(steps, losses, 1000)
    assert found["budget"] == 400  # r(400) = 0, r(500..) < 0; r(300) = (2.2 - 2.0) / 2.2


# ----------------------------------------------------------------------------------------------
# Wall time


def test_grid_time_counts_waves_of_parallel_runs():
    # 5 arms x 3 seeds on 2 workers = 8 waves; 2048 tokens/step at 1000 tokens/s = 2.048 s/step
    t = grid_time(1200, 2.048, runs=15, jobs=2, max_minutes=90)
    assert t["waves"] == 8
    assert t["seconds"] == pytest.approx(8 * 1200 * 2.048)
    assert t["fit_steps"] == 329  # 5400 / (8 x 2.048) = 329.6


def test_the_cli_reads_the_speed_and_names_the_cap_it_applies(tmp_path, capsys):
    run = write_run(tmp_path / "run", plateau_curve(), 3000, tokens_per_second=1000.0)
    code, out, _ = run_cli([str(run), "--arms", "5", "--seeds", "3", "--jobs", "2"], capsys)
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("budget: 1200 steps")
    assert "2.048 s/step" in first and "set 329 steps (the 90-minute cap)" in first
    assert "| 1200 | 2.6000 | 1500 | +0.00% | yes <- budget |" in out
    code, out, _ = run_cli([str(run), "--arms", "1", "--seeds", "1", "--max-minutes", "60"], capsys)
    assert "set 1200 steps (the plateau, within 60 minutes)" in out.splitlines()[0]


def test_a_resumed_run_keeps_the_last_row_of_a_repeated_step(tmp_path):
    run = write_run(tmp_path / "run", plateau_curve(), 3000)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 100, "val_loss": 9.0}) + "\n")
        f.write('{"step": 31')  # a kill mid-line
    read = read_run(run)
    assert read.losses[0] == 9.0
    assert any("truncated" in n for n in read.notes)


# ----------------------------------------------------------------------------------------------
# Bad input: one line, status 2


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing", "no run directory"),
        ("no_metrics", "metrics.jsonl does not exist"),
        ("no_val", "no val_loss rows"),
        ("two_points", "2 eval point(s)"),
        ("damaged", "line 1 is not JSON"),
        ("short", "no eval point has a full window"),
    ],
)
def test_bad_run_directories_are_one_error_line_with_status_2(tmp_path, capsys, case, expected):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
    if case == "no_val":
        (run / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 3.0}) + "\n")
    elif case == "two_points":
        write_run(run, {100: 3.0, 200: 2.9}, 200)
    elif case == "damaged":
        (run / "metrics.jsonl").write_text("{oops\n" + json.dumps({"step": 1}) + "\n")
    elif case == "short":  # planned 10000 steps, killed at 300: no point has a 1000-step window
        write_run(run, {100: 3.0, 200: 2.9, 300: 2.8}, 10000)
    code, out, err = run_cli([str(run)], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--threshold", "2"], "between 0 and 1"),
        (["--window", "0"], "between 0 and 1"),
        (["--jobs", "0"], "positive integer"),
        (["--max-minutes", "-5"], "--max-minutes"),
        ([], "run_dir"),
    ],
)
def test_bad_options_are_one_error_line_with_status_2(tmp_path, capsys, argv, expected):
    run = write_run(tmp_path / "run", plateau_curve(), 3000)
    code, _, err = run_cli(([str(run)] if argv else []) + argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
