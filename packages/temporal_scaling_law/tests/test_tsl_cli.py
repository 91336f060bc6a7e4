"""End to end: repro-tsl-fit and repro-tsl-rank on synthetic run directories."""

import inspect
import json
import subprocess
import sys

import numpy as np
from repro_temporal_scaling_law import DEFAULT_BASELINES, DEFAULT_FORMS, fit_run
from repro_temporal_scaling_law.cli import default_settings, main, rank_main
from tsl_synthetic import TruthCoefficients, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_fit_cli_writes_json_and_plot_and_beats_trivial_predictors(synthetic_run, tmp_path, capsys):
    out = tmp_path / "out"

    assert main(["--run", str(synthetic_run), "--fit-until", "0.2", "--out", str(out)]) == 0

    assert "tsl" in capsys.readouterr().out
    result = json.loads((out / "tsl_fit.json").read_text())
    assert (out / "tsl_fit.png").read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in out.iterdir()) == ["tsl_fit.json", "tsl_fit.png"]  # no temp files
    assert result["settings"]["fit_until_step"] == 400
    assert result["settings"]["forms"] == DEFAULT_FORMS["hyperbolic"]

    checkpoints = result["checkpoints"]
    held_out = np.array(checkpoints["held_out"])
    measured = np.array(checkpoints["measured_loss"])[held_out]
    tsl = result["methods"]["tsl"]
    predicted = np.array(tsl["predicted_loss"])[held_out]
    # The JSON's errors are the errors of the JSON's predictions.
    by_hand = 100 * np.mean(np.abs(predicted - measured) / measured)
    assert abs(tsl["heldout"]["mape"] - by_hand) < 1e-9
    # Trivially wrong predictor: the loss stays at its first logged value.
    first_value_mape = 100 * np.mean(np.abs(checkpoints["measured_loss"][0] - measured) / measured)
    assert tsl["heldout"]["mape"] < 0.5
    assert tsl["heldout"]["mape"] < first_value_mape / 10
    assert tsl["heldout"]["mape"] < result["methods"]["last_value"]["heldout"]["mape"] / 10
    assert tsl["heldout"]["r2"] > 0.99


def test_fit_cli_default_output_is_inside_the_run(synthetic_run):
    assert main(["--run", str(synthetic_run), "--fit-until", "0.3", "--form", "a2=lr_linear"]) == 0
    result = json.loads((synthetic_run / "tsl" / "tsl_fit.json").read_text())
    assert result["settings"]["forms"]["a2"] == "lr_linear"


def test_fit_cli_rejects_a_malformed_run_dir_with_a_clear_message(synthetic_run, capsys):
    (synthetic_run / "position_loss.npz").unlink()

    assert main(["--run", str(synthetic_run)]) == 2

    error = capsys.readouterr().err
    assert "position_loss.npz not found" in error
    assert "--set train.position_loss_points=40" in error


def test_fit_cli_module_entry_point(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "repro_temporal_scaling_law.cli", "--run", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "position_loss.npz not found" in completed.stderr


def test_rank_cli_finds_the_best_mixture_when_early_losses_mislead(tmp_path, capsys):
    # Final loss ~ a2_u, early loss ~ a2_u + a2_v: the early order (A < B < C) is not the final
    # order (B < C < A), as when a mixture learns slower but anneals further.
    runs = [
        write_run(tmp_path / name, TruthCoefficients(a2_u=u, a2_v=v), seed=seed)
        for seed, (name, u, v) in enumerate([("A", 2.5, 0.2), ("B", 2.3, 0.5), ("C", 2.4, 0.45)])
    ]
    out = tmp_path / "ranking"

    assert rank_main(["--runs", *map(str, runs), "--fit-until", "0.2", "--out", str(out)]) == 0

    ranking = json.loads((out / "tsl_ranking.json").read_text())
    assert (out / "tsl_ranking.png").read_bytes()[:8] == PNG_SIGNATURE
    assert ranking["best_run_measured"] == str(runs[1])
    assert ranking["methods"]["tsl"]["spearman"] == 1.0
    assert ranking["methods"]["tsl"]["top1_hit"] is True
    assert ranking["methods"]["tsl"]["regret"] == 0.0
    assert ranking["methods"]["last_value"]["spearman"] < 0
    assert "spearman" in capsys.readouterr().out


def test_fit_yaml_states_the_api_defaults():
    settings = default_settings()
    signature = inspect.signature(fit_run).parameters
    for name in (
        "fit_until",
        "fit_from",
        "law",
        "min_r2",
        "index_offset",
        "first_position",
        "joint_refine",
    ):
        assert settings[name] == signature[name].default, name
    assert settings["forms"] == DEFAULT_FORMS
    assert tuple(settings["baselines"]) == DEFAULT_BASELINES == signature["baselines"].default
