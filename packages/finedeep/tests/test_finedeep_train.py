"""Training through the core Trainer on the debug preset, and the package's entry points."""

import json

import pytest
from repro_core.config import load_config, package_preset_dirs
from repro_core.train import Trainer, reset_accelerate
from repro_finedeep import FinedeepForCausalLM, FinedeepModelConfig
from repro_finedeep import train as train_module
from repro_finedeep.evaluate import main as eval_main


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    """20 steps of Finedeep (2, 4) on the debug preset."""
    reset_accelerate()
    cfg = load_config(
        "debug",
        ["train.progress=false"],
        FinedeepModelConfig,
        package_preset_dirs(train_module.__file__),
    )
    run_dir = tmp_path_factory.mktemp("finedeep-debug")
    trainer = Trainer(cfg, run_dir)
    before = trainer.evaluate()["loss"]
    results = trainer.train()
    reset_accelerate()
    return run_dir, before, results, trainer


def test_a_few_training_steps_lower_the_loss(debug_run):
    run_dir, before, results, trainer = debug_run
    assert isinstance(trainer.accelerator.unwrap_model(trainer.model), FinedeepForCausalLM)
    assert results["val_loss"] < before - 0.3, (before, results["val_loss"])
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [m["lm_loss"] for m in metrics if "lm_loss" in m]
    assert train_losses[-1] < train_losses[0]


def test_evaluate_reports_nsar(debug_run, capsys):
    run_dir, *_ = debug_run
    assert eval_main(["--run", str(run_dir), "--batches", "2", "--batch-size", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["perplexity"] > 1 and 0 < out["bits_per_byte"] < 10
    per_layer = out["nsar"]["per_layer"]["silu"]["0.1"]
    assert len(per_layer) == 2 and all(0 <= v <= 1 for v in per_layer)


def test_train_entry_point_prints_config_with_switches(capsys):
    assert (
        train_module.main(
            ["--preset", "debug", "--set", "model.router_norm=sum_to_one", "--print-config"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "router_norm: sum_to_one" in text and "num_sublayers: 2" in text


def test_dense_variant_builds_the_core_decoder():
    from repro_core.modeling import DecoderLM

    model = FinedeepModelConfig(
        variant="dense",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
    ).build(40, 16)
    assert type(model) is DecoderLM


def test_perf_cases_run_forward_and_backward():
    from repro_finedeep.bench import perf_cases

    cases = perf_cases(quick=True)
    assert cases and all(c["unit"] == "tokens" and c["work"] > 0 for c in cases)
    for case in cases:
        case["candidate"][1]()
        case["baseline"][1]()


def test_checkpoints_lists_only_existing_models(tmp_path, monkeypatch):
    from repro_finedeep.reproduce import checkpoints

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    assert checkpoints() == {}
    final = tmp_path / "finedeep" / "tiny" / "dense" / "seed0" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    assert checkpoints() == {"dense": str(final.resolve())}
