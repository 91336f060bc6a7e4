"""Entry points: two-stage training, the converter CLI, the evaluation and the report."""

from __future__ import annotations

import json

import pytest
import repro_uniattn.train as ua_train
import torch
from repro_core.config import load_config, package_preset_dirs
from repro_core.data import get_tokenizer, resolve_corpus
from repro_core.modeling import DecoderConfig, DecoderLM
from repro_core.train import reset_accelerate
from repro_uniattn import UniAttnForCausalLM
from repro_uniattn.config import UniAttnModelConfig
from repro_uniattn.convert import main as convert_main
from repro_uniattn.task import evaluate_task, write_corpus
from transformers import AutoModelForCausalLM


@pytest.fixture(autouse=True)
def _fresh_accelerate():
    reset_accelerate()
    yield
    reset_accelerate()


def test_two_stage_training_trains_only_compensation_first_then_lowers_loss(tmp_path):
    args = ["--preset", "debug", "--run-dir", str(tmp_path), "--set", "train.progress=false"]
    assert ua_train.main(args) == 0
    cfg = load_config("debug", [], UniAttnModelConfig, package_preset_dirs(ua_train.__file__))
    tok = get_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))
    initial = ua_train.build_model(cfg, tok).state_dict()
    stage1 = UniAttnForCausalLM.from_pretrained(tmp_path / "stage1" / "final").state_dict()
    for name, value in initial.items():
        changed = not torch.equal(value, stage1[name])
        assert changed == ("compensation" in name), name
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert isinstance(final, UniAttnForCausalLM)
    assert not torch.equal(
        final.state_dict()["model.layers.0.self_attn.q_proj.weight"],
        stage1["model.layers.0.self_attn.q_proj.weight"],
    )
    losses = [
        json.loads(line)["lm_loss"]
        for line in open(tmp_path / "metrics.jsonl")
        if '"lm_loss"' in line
    ]
    assert losses[-1] < losses[0]


def test_convert_cli_fits_compensation_and_saves_loadable_model(tmp_path):
    torch.manual_seed(0)
    corpus = resolve_corpus("tinyshakespeare")
    tok = get_tokenizer("bpe:512", corpus)
    cfg = DecoderConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.2,
    )
    DecoderLM(cfg).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    out = tmp_path / "uni"
    argv = [
        "--base",
        str(tmp_path / "base"),
        "--group-size",
        "3",
        "--start",
        "1",
        "--end",
        "4",
        "--out",
        str(out),
        "--calib-corpus",
        "tinyshakespeare",
        "--calib-blocks",
        "4",
        "--calib-seq-len",
        "32",
    ]
    assert convert_main(argv) == 0
    summary = json.loads((out / "conversion.json").read_text())
    assert summary["superblocks"] == [[1, 2, 3]]
    assert summary["dropped_base_weights"] == 4
    model = AutoModelForCausalLM.from_pretrained(out)
    for layer in (2, 3):
        assert model.model.layers[layer].self_attn.compensation.weight.abs().sum() > 0
        assert summary["compensation_init"][str(layer)]["token_residual"] < 1.0


def test_task_evaluation_and_report(tmp_path):
    corpus = write_corpus(tmp_path / "sft", train=50, valid=10, test=8)
    tok = get_tokenizer("bpe:512", resolve_corpus("tinyshakespeare"))
    model = DecoderLM(
        DecoderConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
        )
    )
    out = evaluate_task(model, tok, str(corpus))
    assert out["task_examples"] == 8 and 0 <= out["task_accuracy"] <= 1 and out["task_loss"] > 0


def test_perf_cases_run_and_reusing_layers_cache_no_keys():
    from repro_uniattn.bench import measure_inference, perf_cases
    from repro_uniattn.convert import convert_checkpoint

    cases = perf_cases(quick=True)
    for case in cases:
        case["candidate"][1]()
        case["baseline"][1]()
    torch.manual_seed(0)
    base = DecoderLM(
        DecoderConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    costs = measure_inference(
        {"base": base, "uniattn": convert_checkpoint(base, 2, 2, 4)}, 32, 4, 1
    )
    assert costs["uniattn"]["kv_bytes_per_token"] / costs["base"]["kv_bytes_per_token"] == 7 / 8
    assert costs["uniattn"]["softmax_calls_per_token"] == 3


def test_checkpoint_registry_lists_exactly_the_finished_seed0_models(tmp_path, monkeypatch):
    """The lm-eval hook names an arm iff its seed-0 run has a saved model (config.json)."""
    from repro_uniattn.reproduce import ARMS, checkpoints

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    assert checkpoints() == {}
    root = tmp_path / "uniattn" / "tiny"
    (root / "cla" / "seed0" / "final").mkdir(parents=True)
    (root / "cla" / "seed0" / "final" / "config.json").write_text("{}")
    (root / "finetune-lr1e-3" / "seed1" / "final").mkdir(parents=True)  # another seed: not listed
    (root / "finetune-lr1e-3" / "seed1" / "final" / "config.json").write_text("{}")
    (root / "uniattn" / "seed0" / "final").mkdir(parents=True)  # no model saved: not listed
    assert {"cla", "finetune-lr1e-3"} <= {arm.name for arm in ARMS}
    assert checkpoints() == {"uniattn-cla": str((root / "cla" / "seed0" / "final").resolve())}


def documented_train_commands() -> list[list[str]]:
    """The ``repro-uniattn-train`` command lines of train.py's docstring and the README."""
    import shlex
    from pathlib import Path

    readme = Path(ua_train.__file__).parents[2] / "README.md"
    text = (ua_train.__doc__ + "\n" + readme.read_text()).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("repro-uniattn-train "):
            commands.append(shlex.split(line)[1:])
    return commands


def test_documented_train_commands_resolve_their_config(capsys):
    """Every documented command, e.g. ``--preset tiny --set model.variant=cla``, resolves its
    config (the tiny preset's stage1_steps used to be refused for base and cla)."""
    commands = documented_train_commands()
    variants = {arg for cmd in commands for arg in cmd if arg.startswith("model.variant=")}
    assert {"model.variant=cla", "model.variant=base"} <= variants
    for argv in commands:
        argv = [a for a in argv if a != "--resume"] + ["--print-config"]
        assert ua_train.main(argv) == 0, argv
    for variant in ("base", "softmax", "cla", "uniattn"):
        cfg = load_config(
            "tiny",
            [f"model.variant={variant}"],
            UniAttnModelConfig,
            package_preset_dirs(ua_train.__file__),
        )
        assert cfg.model.stage1_steps == 100
        assert cfg.model.runs_stage1 == (variant == "uniattn")


def test_readme_states_the_tiny_presets_stage1_steps():
    from pathlib import Path

    cfg = load_config("tiny", [], UniAttnModelConfig, package_preset_dirs(ua_train.__file__))
    readme = (Path(ua_train.__file__).parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `model.stage1_steps`"))
    assert row.split("|")[2].strip() == f"{cfg.model.stage1_steps} (tiny)"


def test_cla_with_the_presets_stage1_steps_trains_one_stage(tmp_path):
    """variant=cla under a preset with stage1_steps > 0 (debug: 4) trains only stage 2."""
    args = ["--preset", "debug", "--run-dir", str(tmp_path), "--set", "train.progress=false"]
    assert ua_train.main(args + ["--set", "model.variant=cla"]) == 0
    assert not (tmp_path / "stage1").exists()
    config = json.loads((tmp_path / "final" / "config.json").read_text())
    assert config["uniattn_sharing"] == "kv"
    steps = [json.loads(line).get("step") for line in open(tmp_path / "metrics.jsonl")]
    assert max(s for s in steps if s is not None) == 10  # train.max_steps of debug


def test_paper_like_cost_section():
    """The cost table of a random shape and the attention split reach the markdown."""
    from repro_uniattn.bench import attention_time_split, shape_models
    from repro_uniattn.costs import cost_ratios, paper_like_markdown

    shape = dict(layers=4, hidden=32, intermediate=64, heads=4, kv_heads=2, vocab=64)
    shape.update(group_size=2, start=2, end=4)
    models = cost_ratios(shape_models(shape), prefill=16, decode=2, repeats=1)
    assert models["uniattn"]["kv_bytes_per_token_ratio"] == 7 / 8
    assert models["cla"]["kv_bytes_per_token_ratio"] == 6 / 8
    split = attention_time_split(seq_len=32, heads=2, head_dim=8, repeats=1)
    assert abs(split["qk_share"] + split["softmax_share"] + split["pv_share"] - 1) < 1e-9
    text = "\n".join(
        paper_like_markdown({"shape": shape, "models": models, "attention_split": split})
    )
    assert "0.875x" in text and "mask + softmax" in text


def test_latency_claims_pair_the_timing_rounds():
    """Latency verdicts use the one rule with the interleaved rounds as paired replicates."""
    from repro_uniattn.reproduce import latency_claims

    base = [1.00, 1.30, 0.90, 1.10, 1.05]  # round-to-round load swings, shared by both models
    faster = [b * 0.9 for b in base]
    noisy = [b * r for b, r in zip(base, (0.8, 1.2, 0.9, 1.1, 1.0))]
    costs = {"base": {"prefill_rounds": base, "decode_rounds": base},
             "uniattn": {"prefill_rounds": faster, "decode_rounds": noisy}}  # fmt: skip
    found = {c["metric"]: c for c in latency_claims({"costs": costs})}
    assert found["prefill_seconds"]["verdict"] == "reproduced"
    assert found["prefill_seconds"]["rows"][0]["test"] == "paired"
    assert found["decode_seconds"]["verdict"] == "not at this scale"
    slower = {"base": costs["base"], "uniattn": {"prefill_rounds": [b * 1.1 for b in base],
                                                 "decode_rounds": base}}  # fmt: skip
    found = {c["metric"]: c for c in latency_claims({"costs": slower})}
    assert found["prefill_seconds"]["verdict"] == "contradicted"


def test_reproduce_without_a_base_fails_fast(tmp_path, capsys, monkeypatch):
    from repro_uniattn.reproduce import main

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))  # never reuse real runs
    missing = tmp_path / "no-base"
    out = tmp_path / "results"
    assert main(["--preset", "tiny", "--out", str(out), "--set", f"model.init_from={missing}"]) == 2
    err = capsys.readouterr().err
    assert "not a model directory" in err and err.startswith("error: ")
    monkeypatch.setenv("REPRO_BASE", str(missing))
    assert main(["--preset", "tiny", "--out", str(out)]) == 2
    assert "make base" in capsys.readouterr().err
    assert main(["--preset", "debug", "--out", str(out)]) == 2  # no base at all
    assert not out.exists()  # nothing written
    assert "model.init_from" in capsys.readouterr().err
