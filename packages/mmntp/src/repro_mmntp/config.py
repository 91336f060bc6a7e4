"""Typed configuration of one MMNTP run: data, image tokenizer, model, task mix, training.

A preset YAML is a serialised :class:`MMNTPRunConfig`; ``--set section.key=value`` overrides
apply on top (``repro_core.config`` does the parsing and validation of types). Switches for
what the spec leaves open are documented here with their defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from repro_core.config import (
    ConfigError,
    ModelConfig,
    TrainConfig,
    check,
    find_preset,
    from_dict,
    package_preset_dirs,
    set_by_path,
)


@dataclass
class DataSection:
    """``dataset``: only ``digits`` offline. ``split_seed`` fixes the held-out split for every run
    seed. ``shift_augment``: add the four 1-pixel shifts of each training image (5x data)."""

    dataset: str = "digits"
    test_fraction: float = 0.2
    split_seed: int = 0
    shift_augment: bool = True

    def __post_init__(self) -> None:
        check(self.dataset == "digits", "data.dataset", self.dataset, "'digits' (offline)")
        check(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "0 < value < 1")


@dataclass
class TokenizerSection:
    """Image tokenizer. ``kind``: vq (EMA VQ-VAE) | fsq | rvq (2-level residual VQ) | kmeans
    (2x2-patch palette). ``num_codes`` K (vq, rvq per level, kmeans); FSQ's K is prod(fsq_levels).
    ``steps``/``batch_size``/``lr``: autoencoder training (Adam)."""

    kind: Literal["vq", "fsq", "rvq", "kmeans"] = "vq"
    num_codes: int = 64
    latent_dim: int = 16
    fsq_levels: list[int] = field(default_factory=lambda: [4, 4, 4])
    ema_decay: float = 0.99
    commitment: float = 0.25
    dead_code_threshold: float = 0.01
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3

    def __post_init__(self) -> None:
        check(self.num_codes >= 2, "tokenizer.num_codes", self.num_codes, ">= 2")
        check(0 <= self.ema_decay < 1, "tokenizer.ema_decay", self.ema_decay, "[0, 1)")
        check(self.steps >= 1, "tokenizer.steps", self.steps, ">= 1")
        check(
            all(v >= 2 for v in self.fsq_levels) and len(self.fsq_levels) >= 1,
            "tokenizer.fsq_levels",
            self.fsq_levels,
            "a list of integers >= 2",
        )


@dataclass
class MMNTPModelConfig(ModelConfig):
    """The decoder (the core's DecoderLM shape fields) plus the survey's switches.

    ``attention``: causal (default; Chameleon/Emu3) | prefix_lm (the condition segment is
    bidirectional) | block_causal (each image span is bidirectional, "semi-causal").
    ``image_input``: how images enter the LM in understanding sequences: codes (discrete,
    canonical) | patches (2x2 pixel patches + projector, Fuyu-style) | encoder (the frozen
    tokenizer encoder's continuous latents + projector, the compositional recipe).
    ``projector``: linear | mlp. ``resampler_queries``: 0 = off, else learned queries.
    ``generation_target``: codes (discrete token prediction, CE) | latents (continuous token
    prediction: regress the frozen encoder's latents with MSE, decoded by the tokenizer's
    decoder).
    """

    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    attention: Literal["causal", "prefix_lm", "block_causal"] = "causal"
    image_input: Literal["codes", "patches", "encoder"] = "codes"
    projector: Literal["linear", "mlp"] = "linear"
    resampler_queries: int = 0
    generation_target: Literal["codes", "latents"] = "codes"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.init_from is None, "model.init_from", self.init_from, "null (trained from scratch)"
        )
        check(
            self.resampler_queries in (0, 16),
            "model.resampler_queries",
            self.resampler_queries,
            "0 (off) or 16 (an image span keeps 16 positions)",
        )


@dataclass
class TaskSection:
    """Task mix and evaluation.

    ``system``: unified (one LM for all tasks) | task_specific (one LM per task, same steps each).
    ``tasks``: any of caption, generation, interleaved, icl. ``condition_dropout``: fraction of
    generation sequences whose text is dropped (trains the unconditional branch for CFG).
    ``cfg_scale``: guidance scale for the second generation evaluation (1 = no guidance).
    ``icl_ways``/``icl_shots``: the k-shot in-context probe with made-up label words.
    """

    system: Literal["unified", "task_specific"] = "unified"
    tasks: list[str] = field(default_factory=lambda: ["caption", "generation"])
    paraphrase: bool = True
    condition_dropout: float = 0.1
    samples_per_class: int = 50
    temperature: float = 1.0
    top_k: int = 0
    cfg_scale: float = 3.0
    icl_ways: int = 2
    icl_shots: int = 2
    icl_probes: int = 400

    def __post_init__(self) -> None:
        allowed = {"caption", "generation", "interleaved", "icl"}
        check(
            bool(self.tasks) and set(self.tasks) <= allowed,
            "task.tasks",
            self.tasks,
            f"a non-empty subset of {sorted(allowed)}",
        )
        check(
            0 <= self.condition_dropout < 1,
            "task.condition_dropout",
            self.condition_dropout,
            "[0, 1)",
        )
        check(self.temperature > 0, "task.temperature", self.temperature, "> 0")
        check(self.icl_ways >= 2, "task.icl_ways", self.icl_ways, ">= 2")
        check(self.icl_shots >= 1, "task.icl_shots", self.icl_shots, ">= 1")


@dataclass
class MMNTPRunConfig:
    model: MMNTPModelConfig = field(default_factory=MMNTPModelConfig)
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    task: TaskSection = field(default_factory=TaskSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    name: str = "mmntp"

    def __post_init__(self) -> None:
        if self.model.image_input == "encoder" and self.tokenizer.kind == "kmeans":
            raise ConfigError(
                "model.image_input='encoder' needs a tokenizer with an encoder (vq, fsq, rvq), "
                "not tokenizer.kind='kmeans'"
            )

        continuous = self.model.image_input != "codes" or self.model.generation_target == "latents"
        if continuous and self.tokenizer.kind == "rvq":
            raise ConfigError(
                "tokenizer.kind='rvq' has 32 codes per image but 16 latents: use it with "
                "model.image_input=codes and model.generation_target=codes"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def preset_dirs() -> list[Path]:
    return package_preset_dirs(__file__)


def load_run_config(preset: str | None, overrides=()) -> MMNTPRunConfig:
    """A preset (name or .yaml path) with ``key=value`` overrides applied, validated."""
    data: dict = {}
    if preset is not None:
        path = find_preset(str(preset), preset_dirs())
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path} must hold a mapping with sections model/data/tokenizer/task/train"
            )
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        set_by_path(data, key.strip(), raw.strip())
    return from_dict(MMNTPRunConfig, data)
