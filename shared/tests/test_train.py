"""The trainer: learning, exact resume, checkpoint integrity, per-position loss logging."""

import json

import numpy as np
import pytest
import repro_core.evaluate as core_eval
import repro_core.train as core_train
import torch
from repro_core.config import load_config, package_preset_dirs
from repro_core.train import Trainer, latest_checkpoint, list_checkpoints, verify_checkpoint
from safetensors.torch import load_file

PRESETS = package_preset_dirs(core_train.__file__)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def debug_cfg(*overrides):
    return load_config("debug", ["train.progress=false", *overrides], preset_dirs=PRESETS)


class StopAt:
    """Simulates a crash: raises after optimizer step ``step``."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step):
        if step == self.step:
            raise KeyboardInterrupt


def test_a_few_steps_lower_the_loss_and_write_a_run_dir(tmp_path, capsys):
    # wandb goes through its API in "disabled" mode (set by the root conftest): no network
    cfg = debug_cfg("train.max_steps=30", "train.eval_every=0", "train.wandb=true")
    results = Trainer(cfg, tmp_path).train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["lm_loss"] for r in lines if "lm_loss" in r]
    assert losses[-1] < losses[0] - 0.5
    assert results["val_loss"] < np.log(512)  # better than uniform over the vocabulary
    for name in (
        "config.yaml",
        "meta.json",
        "results.json",
        "final/model.safetensors",
        "final/tokenizer.json",
    ):
        assert (tmp_path / name).is_file(), name
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert "torch" in meta["versions"] and meta["world_size"] == 1
    # repro-eval on the run directory reproduces the trainer's final (whole-split) evaluation
    capsys.readouterr()
    args = [
        "--run",
        str(tmp_path),
        "--batches",
        str(cfg.train.eval_batches),
        "--batch-size",
        str(cfg.train.batch_size),
    ]
    assert core_eval.main(args) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["loss"] == pytest.approx(results["val_loss"], abs=1e-5)
    assert evaluated["bits_per_byte"] == pytest.approx(results["val_bits_per_byte"], abs=1e-5)


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    overrides = (
        "train.max_steps=12",
        "train.save_every=4",
        "train.eval_every=0",
        "train.keep_checkpoints=3",
        "train.position_loss_points=6",
        "train.eval_batches=1",
    )
    Trainer(debug_cfg(*overrides), tmp_path / "full").train()
    reference = load_file(tmp_path / "full" / "final" / "model.safetensors")

    with pytest.raises(KeyboardInterrupt):
        Trainer(debug_cfg(*overrides), tmp_path / "cut", callbacks=[StopAt(9)]).train()
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["step-0000004", "step-0000008"]
    Trainer(debug_cfg(*overrides), tmp_path / "cut", resume=True).train()
    resumed = load_file(tmp_path / "cut" / "final" / "model.safetensors")
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key
    # the per-position log keeps the points measured before the interruption
    full, cut = (
        np.load(tmp_path / "full" / "position_loss.npz"),
        np.load(tmp_path / "cut" / "position_loss.npz"),
    )
    assert full["steps"].tolist() == cut["steps"].tolist()
    np.testing.assert_array_equal(full["loss"], cut["loss"])


def test_truncated_checkpoint_is_refused_and_the_previous_one_used(tmp_path):
    overrides = (
        "train.max_steps=12",
        "train.save_every=4",
        "train.eval_every=0",
        "train.keep_checkpoints=3",
    )
    Trainer(debug_cfg(*overrides), tmp_path / "full").train()
    reference = load_file(tmp_path / "full" / "final" / "model.safetensors")

    run = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        Trainer(debug_cfg(*overrides), run, callbacks=[StopAt(9)]).train()
    weights = run / "checkpoints" / "step-0000008" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a write cut short
    with pytest.raises(
        ValueError, match=r"step-0000008 is corrupt: model/model.safetensors has 100 bytes"
    ):
        verify_checkpoint(run / "checkpoints" / "step-0000008")
    assert latest_checkpoint(run).name == "step-0000004"
    Trainer(debug_cfg(*overrides), run, resume=True).train()
    resumed = load_file(run / "final" / "model.safetensors")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_position_loss_logger_averages_to_the_ordinary_validation_loss(tmp_path):
    cfg = debug_cfg(
        "train.max_steps=16",
        "train.position_loss_points=6",
        "train.eval_every=0",
        "train.eval_batches=2",
    )
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    data = np.load(tmp_path / "position_loss.npz")
    steps, loss = data["steps"], data["loss"]
    assert steps[0] == 1 and steps[-1] == 16 and np.all(np.diff(steps) > 0)
    assert loss.shape == (len(steps), cfg.data.seq_len - 1)
    assert data["tokens_seen"][-1] == 16 * cfg.train.batch_size * cfg.data.seq_len
    # independent reference: the model's own mean loss (HF label shifting) on the same blocks
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    n = cfg.train.eval_batches * cfg.train.batch_size
    x = torch.from_numpy(np.asarray(trainer.val_blocks[:n], dtype=np.int64))
    with torch.no_grad():
        reference = model(input_ids=x, labels=x).lm_loss.item()
    assert loss[-1].mean() == pytest.approx(reference, abs=1e-5)
    # early steps have higher loss at every position than the last logged step, on average
    assert loss[0].mean() > loss[-1].mean()


def test_a_finished_run_is_never_overwritten_without_resume_or_overwrite(tmp_path, capsys):
    from accelerate.state import AcceleratorState, GradientState
    from repro_core.rundir import RunDirExistsError

    def reset():
        AcceleratorState._reset_state(True)
        GradientState._reset_state()

    args = ["--preset", "debug", "--run-dir", str(tmp_path), "--set", "train.max_steps=4"]
    args += ["--set", "train.save_every=2", "--set", "train.progress=false"]
    args += ["--set", "train.eval_every=0"]
    assert core_train.main(args) == 0
    assert "bits/byte" in capsys.readouterr().out
    before = {f: (tmp_path / f).read_bytes() for f in ("results.json", "metrics.jsonl")}
    reset()
    assert core_train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "finished run" in err[0]
    assert "--resume" in err[0] and "--overwrite" in err[0]
    assert {f: (tmp_path / f).read_bytes() for f in before} == before
    # the class refuses too, unless the caller says resume or overwrite
    with pytest.raises(RunDirExistsError, match="--overwrite"):
        Trainer(debug_cfg("train.max_steps=4"), tmp_path)
    # --overwrite replaces the run: old checkpoints and metrics go, a new run is written
    stale = tmp_path / "checkpoints" / "step-0000099"
    stale.mkdir()
    reset()
    assert core_train.main([*args, "--set", "train.max_steps=2", "--overwrite"]) == 0
    assert not stale.exists()
    assert json.loads((tmp_path / "results.json").read_text())["step"] == 2
    steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert max(steps) == 2


def test_post_training_starts_from_a_base_checkpoint(tmp_path, monkeypatch):
    """init_from=$REPRO_BASE loads the base weights and its tokenizer (DSMoE/UniAttn/HARPE path)."""
    Trainer(debug_cfg("train.max_steps=20", "train.eval_every=0"), tmp_path / "base").train()
    monkeypatch.setenv("REPRO_BASE", str(tmp_path / "base" / "final"))
    cfg = debug_cfg(
        "train.max_steps=2", "train.eval_every=0", "model.init_from=$REPRO_BASE", "train.lr=1e-9"
    )
    trainer = Trainer(cfg, tmp_path / "post")
    base = load_file(tmp_path / "base" / "final" / "model.safetensors")
    state = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    assert all(torch.equal(state[k], base[k]) for k in base)
    assert (
        trainer.tokenizer.get_vocab()
        == __import__("transformers")
        .AutoTokenizer.from_pretrained(tmp_path / "base" / "final")
        .get_vocab()
    )
    monkeypatch.setenv("REPRO_BASE", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="make base"):
        Trainer(cfg, tmp_path / "post2")
