"""Typed configs: presets, overrides, and errors that name the key and what is allowed."""

from dataclasses import dataclass

import pytest
import repro_core.train as core_train
from repro_core.config import ConfigError, ModelConfig, load_config, package_preset_dirs

PRESETS = package_preset_dirs(core_train.__file__)


def test_presets_load_and_overrides_apply():
    cfg = load_config(
        "tiny", ["train.lr=3e-4", "model.num_hidden_layers=6", "seed=3"], preset_dirs=PRESETS
    )
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.num_hidden_layers == 6 and cfg.seed == 3
    assert cfg.data.corpus == "wikitext-2"
    for name in ("debug", "tiny", "base", "small"):
        load_config(name, preset_dirs=PRESETS)


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"train\.learning_rate.*allowed keys.*'lr'"):
        load_config("debug", ["train.learning_rate=1e-3"], preset_dirs=PRESETS)
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config("debug", ["optimizer.lr=1"], preset_dirs=PRESETS)


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("train.lr=-1", r"train\.lr=-1.*positive"),
        ("train.batch_size=0", r"train\.batch_size=0.*positive integer"),
        ("train.batch_size=2.5", r"train\.batch_size=2\.5.*integer"),
        ("train.mixed_precision=fp8", r"mixed_precision='fp8'.*\['auto', 'no', 'bf16', 'fp16'\]"),
        ("model.hidden_size=90", r"model\.hidden_size=90.*multiple of model\.num_attention_heads"),
        ("data.seq_len=1", r"data\.seq_len=1.*>= 2"),
        ("train.warmup_steps=100000", r"train\.warmup_steps.*train\.max_steps"),
        ("train.wandb=maybe", r"train\.wandb='maybe'.*true or false"),
    ],
)
def test_invalid_values_fail_with_the_allowed_range(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("debug", [override], preset_dirs=PRESETS)


def test_missing_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"preset 'nope' not found.*'debug'.*'tiny'"):
        load_config("nope", preset_dirs=PRESETS)


def test_package_model_config_subclass_adds_fields():
    @dataclass
    class ExpertConfig(ModelConfig):
        num_experts: int = 4

        def __post_init__(self):
            super().__post_init__()
            if self.num_experts < 1:
                raise ConfigError(f"model.num_experts={self.num_experts} is invalid: allowed >= 1")

    cfg = load_config(
        "debug", ["model.num_experts=8"], model_config_cls=ExpertConfig, preset_dirs=PRESETS
    )
    assert cfg.model.num_experts == 8 and cfg.model.hidden_size == 64
    with pytest.raises(ConfigError, match="num_experts=0"):
        load_config(
            "debug", ["model.num_experts=0"], model_config_cls=ExpertConfig, preset_dirs=PRESETS
        )


def test_yaml_round_trip(tmp_path):
    cfg = load_config("tiny", ["train.lr=1e-4"], preset_dirs=PRESETS)
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(str(path)) == cfg
