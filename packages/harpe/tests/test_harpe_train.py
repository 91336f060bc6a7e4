"""Training: a few steps lower the loss; the multi-stage runner trains each stage as declared."""

import json

import pytest
import torch
from repro_core.config import ConfigError, load_config, package_preset_dirs
from repro_harpe.config import HarpeModelConfig, parse_stage
from repro_harpe.modeling import HarpeConfig, HarpeForCausalLM


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    cfg = HarpeConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, rope_theta_per_head=[1e4, 1e5, 1e6, 5e6])  # fmt: skip
    model = HarpeForCausalLM(cfg)
    x = torch.randint(0, 50, (4, 64), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model(x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.3


def test_stage_plan_splits_the_budget_and_parses_fractions():
    m = HarpeModelConfig(rope_theta=5e6, stages=["1e6:0.25", "2e6:512"])
    assert parse_stage("1e6:0.25", 1024) == (1e6, 256)
    plan = m.stage_plan(1024)
    assert [(b, n) for b, n, _ in plan] == [(1e6, 256), (2e6, 512), (5e6, 1024)]
    assert [round(s, 6) for _, _, s in plan] == [round(1 / 3, 6)] * 3
    with pytest.raises(ConfigError, match="model.stages"):
        HarpeModelConfig(stages=["1e6-256"])
    with pytest.raises(ConfigError, match="rope_scheme=single"):
        HarpeModelConfig(rope_scheme="uniform", rope_scaling="yarn")


@pytest.mark.slow
def test_multi_stage_run_trains_each_stage_with_its_base_length_and_equal_tokens(
    tmp_path, monkeypatch
):
    """Base (debug preset) then 3-stage ABF: each stage's saved config has its base and length,
    and every stage sees the same number of tokens per step."""
    from repro_harpe.train import run

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    dirs = package_preset_dirs(__import__("repro_harpe.train").train.__file__)
    base = load_config("base-debug", ["train.max_steps=2"], HarpeModelConfig, dirs)
    run(base, tmp_path / "base")
    cfg = load_config(
        "debug",
        [f"model.init_from={tmp_path / 'base' / 'final'}", 'model.stages=["1e6:0.25","2e6:0.5"]',
         "train.max_steps=3", "train.batch_size=1"],
        HarpeModelConfig, dirs,
    )  # fmt: skip
    run(cfg, tmp_path / "multi")
    seen = []
    for stage, (theta, length) in {
        "multi/stage0": (1e6, 32),
        "multi/stage1": (2e6, 64),
        "multi": (5e6, 128),
    }.items():
        conf = json.loads((tmp_path / stage / "final" / "config.json").read_text())
        assert (conf["rope_theta"], conf["max_position_embeddings"]) == (theta, length)
        res = json.loads((tmp_path / stage / "results.json").read_text())
        seen.append(res["tokens_seen"])
    assert seen == [128, 128, 128]  # one step each at 4 x 32, 2 x 64, 1 x 128 tokens
