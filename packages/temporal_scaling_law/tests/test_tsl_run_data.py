"""The loader reads the trainer's format and rejects malformed run directories clearly."""

import json

import numpy as np
import pytest
import yaml
from repro_temporal_scaling_law import RunFormatError, load_run, save_run
from tsl_synthetic import MAX_STEPS, PEAK_LR, WARMUP_STEPS, logged_steps, warmup_cosine_lr


def test_loads_the_trainer_format(synthetic_run):
    run = load_run(synthetic_run)
    steps = logged_steps()
    assert run.max_steps == MAX_STEPS
    assert run.loss.shape == (len(steps), 64)
    np.testing.assert_array_equal(run.steps, steps)
    np.testing.assert_allclose(run.overall_loss, run.loss.mean(axis=1))
    # The config's schedule agrees with the logged lr, so it is used (exact at every step).
    assert run.lr_schedule is not None and "config" in run.lr_schedule_note
    np.testing.assert_allclose(run.lr_schedule.lr, warmup_cosine_lr(np.arange(MAX_STEPS + 1)))
    assert run.lr_schedule.warmup_end == WARMUP_STEPS


def test_schedule_falls_back_to_logged_lr_values(synthetic_run):
    (synthetic_run / "config.yaml").write_text(yaml.safe_dump({"train": {"max_steps": MAX_STEPS}}))
    run = load_run(synthetic_run)
    assert "interpolated" in run.lr_schedule_note
    # The first logged step is 1; between logged points the interpolation is linear.
    np.testing.assert_allclose(
        run.lr_schedule.lr[1:], warmup_cosine_lr(np.arange(1, MAX_STEPS + 1)), atol=0.01 * PEAK_LR
    )


def test_missing_position_loss_says_how_to_produce_it(synthetic_run):
    (synthetic_run / "position_loss.npz").unlink()
    with pytest.raises(
        RunFormatError, match=r"position_loss\.npz not found.*--set train\.position_loss_points=40"
    ):
        load_run(synthetic_run)


def test_missing_array_is_named(synthetic_run):
    path = synthetic_run / "position_loss.npz"
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k != "lr"}
    np.savez(path, **arrays)
    with pytest.raises(RunFormatError, match=r"lacks array\(s\) \['lr'\].*position_loss_points=40"):
        load_run(synthetic_run)


def test_inconsistent_shapes_are_named(synthetic_run):
    path = synthetic_run / "position_loss.npz"
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["tokens_seen"] = arrays["tokens_seen"][:-1]
    np.savez(path, **arrays)
    with pytest.raises(RunFormatError, match="'tokens_seen' has shape"):
        load_run(synthetic_run)


def test_non_finite_loss_is_rejected(synthetic_run):
    path = synthetic_run / "position_loss.npz"
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["loss"][3, 5] = np.nan
    np.savez(path, **arrays)
    with pytest.raises(RunFormatError, match="1 non-finite"):
        load_run(synthetic_run)


def test_missing_config_names_the_file_and_the_override(synthetic_run):
    (synthetic_run / "config.yaml").unlink()
    with pytest.raises(RunFormatError, match=r"config\.yaml not found.*max_steps"):
        load_run(synthetic_run)
    assert load_run(synthetic_run, max_steps=MAX_STEPS).max_steps == MAX_STEPS


def test_config_without_max_steps_and_steps_beyond_it(synthetic_run):
    (synthetic_run / "config.yaml").write_text(yaml.safe_dump({"train": {"lr": 1e-3}}))
    with pytest.raises(RunFormatError, match=r"no train\.max_steps"):
        load_run(synthetic_run)
    with pytest.raises(RunFormatError, match="beyond train.max_steps=1000"):
        load_run(synthetic_run, max_steps=1000)


def test_bad_metrics_line_is_located(synthetic_run):
    with (synthetic_run / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"val_loss": 2.0}) + "\n")
    with pytest.raises(RunFormatError, match=r"metrics\.jsonl line \d+ has no 'step'"):
        load_run(synthetic_run)


def test_not_a_directory(tmp_path):
    with pytest.raises(RunFormatError, match="does not exist"):
        load_run(tmp_path / "nowhere")


def test_save_run_round_trip(tmp_path):
    steps = np.array([1, 10, 100, 1000])
    loss = np.random.default_rng(0).uniform(2, 4, (4, 16))
    lr = np.array([1e-4, 1e-3, 8e-4, 1e-4])
    save_run(tmp_path / "own", steps, steps * 512, lr, loss, max_steps=1000)

    run = load_run(tmp_path / "own")

    np.testing.assert_array_equal(run.steps, steps)
    np.testing.assert_array_equal(run.tokens_seen, steps * 512)
    np.testing.assert_array_equal(run.loss, loss)
    assert run.max_steps == 1000
    assert not list((tmp_path / "own").glob("*.tmp"))
