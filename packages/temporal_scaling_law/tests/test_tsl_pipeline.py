"""Phase 2: the package's own train entry point, the mixture corpora and the reproduction grid.

These train real (debug-sized) models through the core Trainer, so they read tinyshakespeare and
wikitext-2 from REPRO_DATA_DIR (the root conftest points it at ../shared/data).
"""

import json
import math

import numpy as np
import pytest
import yaml
from repro_core.claims import RULE
from repro_core.train import reset_accelerate
from repro_temporal_scaling_law import fit_run, load_run
from repro_temporal_scaling_law import reproduce as rep
from repro_temporal_scaling_law.analysis import METHODS, WINDOWS
from repro_temporal_scaling_law.grid_report import plot_names
from repro_temporal_scaling_law.mixtures import (
    build_mixture_corpora,
    interleave,
    mixture_tokenizer_dir,
    take_chars,
)
from repro_temporal_scaling_law.train import main as train_main


@pytest.fixture(autouse=True)
def _fresh_accelerate():
    reset_accelerate()
    yield
    reset_accelerate()


def test_debug_run_of_the_train_entry_point_is_accepted_by_fit_run(tmp_path):
    run_dir = tmp_path / "run"
    assert train_main(["--preset", "debug", "--run-dir", str(run_dir)]) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train"]["position_loss_points"] == 12  # the package preset, not the core's

    run = load_run(run_dir)
    assert run.loss.shape == (len(run.steps), config["data"]["seq_len"] - 1)
    assert run.steps[-1] == config["train"]["max_steps"] and np.all(np.isfinite(run.loss))
    per_step = config["train"]["batch_size"] * config["data"]["seq_len"]
    assert np.array_equal(run.tokens_seen, run.steps * per_step)
    # The logging hook's per-position loss, averaged over positions, is the ordinary validation
    # loss: the trainer's final evaluation uses the same blocks at the same (last) step.
    results = json.loads((run_dir / "results.json").read_text())
    assert run.loss[-1].mean() == pytest.approx(results["val_loss"], abs=1e-5)
    # The logged LR is the schedule rebuilt from config.yaml.
    assert run.lr_schedule is not None and "interpolated" not in run.lr_schedule_note

    # The debug model barely uses context, so keep every checkpoint (min_r2=-inf).
    result = fit_run(run_dir, fit_until=0.5, min_r2=-np.inf)
    assert set(result["methods"]) >= {"tsl", "power_law", "last_value"}
    predicted = np.array(result["methods"]["tsl"]["predicted_loss"], dtype=float)
    assert predicted.shape == (len(run.steps),) and np.all(np.isfinite(predicted))
    assert result["methods"]["tsl"]["heldout"]["mape"] is not None


def test_take_chars_and_interleave():
    lines = ["ab\n", "cde\n", "f\n"]  # 9 characters
    assert take_chars(lines, 5) == ["ab\n", "cde\n"]
    assert take_chars(lines, 13) == lines + ["ab\n", "cde\n"]  # repeats a short source
    assert take_chars(lines, 0) == []
    with pytest.raises(ValueError, match="fewer than"):
        take_chars(lines, 12, repeat=False)
    assert interleave(["a1", "a2", "a3"], ["b1"], chunk_chars=2) == ["a1", "b1", "a2", "a3"]


def _local_sources(tmp_path):
    a = tmp_path / "src_a"
    a.mkdir()
    (a / "train.txt").write_text("".join(f"alpha line {k:04d}\n" for k in range(2000)))
    (a / "valid.txt").write_text("".join(f"alpha valid {k:04d}\n" for k in range(300)))
    b = tmp_path / "src_b.txt"  # one file: no validation split, its last 10% is held out
    b.write_text("".join(f"beta {k:03d}\n" for k in range(500)))
    return str(a), str(b)


def test_mixture_corpora_have_the_asked_proportions_and_one_fixed_validation_target(tmp_path):
    sources = _local_sources(tmp_path)
    kwargs = {"train_chars": 20_000, "chunk_chars": 100}
    folders = build_mixture_corpora(tmp_path / "mix", [0.25, 0.75], sources, **kwargs)
    texts = {w: (f / "train.txt").read_text() for w, f in folders.items()}
    for w, text in texts.items():
        a_chars = sum(len(line) + 1 for line in text.splitlines() if line.startswith("alpha"))
        assert abs(a_chars - w * 20_000) <= 20  # whole lines: within one line
        assert abs(len(text) - 20_000) <= 20
        assert "beta 450" not in text  # held-out lines of B never enter training
    # w = 0.25 needs 15,000 characters of B, which has 4,500 training characters: repeated
    assert texts[0.25].count("beta 000\n") == 4
    valid = {(f / "valid.txt").read_text() for f in folders.values()}
    assert len(valid) == 1  # the same target for every weight
    (valid_text,) = valid
    half = valid_text[: len(valid_text) // 2]
    assert "alpha valid" in half and "beta 4" in half  # interleaved: both in every prefix
    a_valid = sum(len(line) + 1 for line in valid_text.splitlines() if line.startswith("alpha"))
    b_valid = sum(len(line) + 1 for line in valid_text.splitlines() if line.startswith("beta"))
    assert abs(a_valid - b_valid) <= 20  # equal parts of both held-out texts
    # deterministic: a rebuild writes the same bytes and keeps the files (token cache reused)
    before = {w: (f / "train.txt").stat().st_mtime_ns for w, f in folders.items()}
    again = build_mixture_corpora(tmp_path / "mix", [0.25, 0.75], sources, **kwargs)
    assert {w: (f / "train.txt").stat().st_mtime_ns for w, f in again.items()} == before
    # the core resolves a folder to train and validation splits
    from repro_core.data import resolve_corpus

    assert sorted(resolve_corpus(str(folders[0.25])).files) == ["train", "validation"]


def test_mixture_tokenizer_folder_is_keyed_by_tokenizer_spec_and_corpus(tmp_path):
    """A grid rerun with ``--set data.tokenizer=...`` must not reuse the first grid's tokenizer."""
    base = mixture_tokenizer_dir(tmp_path, "bpe:8192", "wikitext-2")
    assert base == mixture_tokenizer_dir(tmp_path, "bpe:8192", "wikitext-2")
    assert base.parent == tmp_path
    others = {
        mixture_tokenizer_dir(tmp_path, "bpe:4096", "wikitext-2"),
        mixture_tokenizer_dir(tmp_path, "bpe:8192", "tinyshakespeare"),
        mixture_tokenizer_dir(tmp_path, "bpe:819", "2wikitext-2"),  # no ambiguous concatenation
    }
    assert base not in others and len(others) == 3


def test_reproduce_grid_trains_fits_every_method_reports_and_resumes(tmp_path, monkeypatch):
    """The grid on repro_core.experiment, smaller than tiny: the debug preset, one seed, the main
    run and two mixtures, trained in process; every method fitted at every window in the run's
    worker; derived per-seed records judged; a rerun starts nothing; --report-only rebuilds."""
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "results"
    args = ["--preset", "debug", "--seeds", "0", "--arms", "main,mix-a0.20,mix-a0.80"]
    assert rep.main([*args, "--jobs", "0", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["arm"] for r in results["runs"]] == ["main", "mix-a0.20", "mix-a0.80"]
    for run in results["runs"]:
        fits = run["metrics"]["fits"]
        assert list(fits) == list(WINDOWS)
        for window, fit in fits.items():
            assert set(fit["methods"]) == set(METHODS)
            # a fit that could not be made is NaN with its reason, never left out
            for method, entry in fit["methods"].items():
                assert math.isfinite(entry["mape"]) or method in fit["errors"]
            assert (
                run["metrics"][f"mape@{window}/last_value"] == fit["methods"]["last_value"]["mape"]
            )
        assert run["metrics"]["final_loss"] == pytest.approx(run["metrics"]["val_loss"], abs=1e-5)
    # one record per method, window and seed; the ranking needs the two mixtures of the seed
    assert len(results["derived"]) == len(METHODS) * len(WINDOWS)
    ranked = results["derived"][0]["metrics"]
    assert set(ranked) >= {"mape_main", "mape_mixtures", "spearman", "regret", "top1_hit"}
    # one seed: no verdict
    assert {c["verdict"] for c in results["claims"]} <= {"too few seeds", "diverged"}
    text = (out / "results.md").read_text()
    assert "## Mixture selection" in text and "## Stage-1 fit quality" in text
    assert "## Claims" in text and RULE in text
    for name in plot_names(results):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    finished = sorted(p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("result.json"))
    assert len(finished) == 3
    assert rep.main([*args, "--jobs", "0", "--out", str(out)]) == 0  # finds every run finished
    assert (
        sorted(p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("result.json")) == finished
    )
    before = (out / "results.md").read_bytes()
    (out / "results.md").unlink()
    assert rep.main(["--report-only", "--preset", "debug", "--out", str(out)]) == 0
    assert (out / "results.md").read_bytes() == before
    assert set(rep.checkpoints("debug")) == {"tsl-main-seed0", "tsl-mix-a0.20-seed0",
                                            "tsl-mix-a0.80-seed0"}  # fmt: skip
