"""Training: a few steps lower the loss; the train / eval entry points run the debug preset."""

import json

import pytest
import torch
from dsmoe_helpers import small_config
from repro_core.config import ConfigError, load_config, package_preset_dirs
from repro_dsmoe import train as train_module
from repro_dsmoe.config import DSMoEModelConfig
from repro_dsmoe.modeling import DSMoEForCausalLM


@pytest.mark.parametrize("gate_mode", ["ste", "hard", "soft"])
def test_a_few_steps_lower_the_loss(gate_mode):
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config(gate_mode=gate_mode)).train()
    ids = torch.randint(0, 48, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        out = model(input_ids=ids, labels=ids)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.lm_loss.detach()))
    assert losses[-1] < losses[0] - 0.5


def test_sparsity_loss_lowers_activation_with_ste():
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config(sparsity_coef=5.0)).train()
    ids = torch.randint(0, 48, (4, 16))
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if "router" in n], lr=5e-2)

    def active():
        with torch.no_grad():
            return model(input_ids=ids, labels=ids).aux_losses["dsmoe_sparsity"].item()

    before = active()
    for _ in range(20):
        out = model(input_ids=ids, labels=ids)
        opt.zero_grad()
        out.aux_losses["dsmoe_sparsity"].backward()
        opt.step()
    assert active() < 0.5 * before


def test_config_errors_name_the_key():
    dirs = package_preset_dirs(train_module.__file__)
    with pytest.raises(ConfigError, match="model.variant"):
        load_config("debug", ["model.variant=moe"], DSMoEModelConfig, dirs)
    with pytest.raises(ConfigError, match="model.top_k"):
        load_config("debug", ["model.top_k=9"], DSMoEModelConfig, dirs)
    with pytest.raises(ConfigError, match="model.gate_mode"):
        load_config("debug", ["model.gate_mode=straight"], DSMoEModelConfig, dirs)


def test_missing_base_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_BASE", str(tmp_path / "nothing"))
    cfg = load_config("tiny", [], DSMoEModelConfig, package_preset_dirs(train_module.__file__))
    with pytest.raises(FileNotFoundError, match="make base"):
        cfg.model.build(vocab_size=8, max_position_embeddings=8)


def test_train_from_a_saved_core_base_and_eval_cli(tmp_path, capsys):
    """The tiny path: a core-trained dense base on disk (model + tokenizer), converted by
    ``model.init_from``; the prune arm calibrates its mask on the base's tokenized corpus."""
    from repro_core.train import main as core_train

    base = tmp_path / "base"
    assert core_train(["--preset", "debug", "--run-dir", str(base), "--set", "train.max_steps=2",
                       "--set", "train.eval_every=0", "--set", "train.progress=false"]) == 0  # fmt: skip
    run = tmp_path / "run"
    args = ["--preset", "debug", "--run-dir", str(run), "--set", "train.max_steps=4",
            "--set", f"model.init_from={base / 'final'}", "--set", "model.variant=prune"]  # fmt: skip
    assert train_module.main(args) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["step"] == 4
    from repro_dsmoe.evaluate import main as eval_main

    capsys.readouterr()
    assert eval_main(["--run", str(run), "--batches", "1", "--taus", "0.3,0.7"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["tau"] for r in report] == [0.3, 0.7]
    assert report[0]["activated_ffn_fraction"] == pytest.approx(0.375, abs=0.01)
