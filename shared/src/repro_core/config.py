"""Typed run configuration: dataclasses, YAML presets, ``--set a.b=value`` overrides.

A preset file is a serialised :class:`RunConfig` (sections ``model``, ``data``, ``train`` and the
top-level ``seed``/``name``). Unknown keys and invalid values raise :class:`ConfigError` naming
the key and what is allowed. Paper packages subclass :class:`ModelConfig` to add their fields
and override :meth:`ModelConfig.build`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class UserError(Exception):
    """A mistake in what the user asked for (a value, a path, a missing file or checkpoint).

    Every command line prints it as one line, ``error: <message>``, and exits with status 2
    (:func:`repro_core.cli.cli_main`); anything else is a bug and keeps its traceback.
    """


class ConfigError(UserError, ValueError):
    """A configuration key or value is invalid; the message says which and what is allowed."""


class MissingInputError(UserError, FileNotFoundError):
    """A file, folder, corpus or checkpoint the run needs is not there; the message says how
    to provide it."""


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")


# Allowed values of the core MoE switches (``repro_core.moe`` validates against the same tuples);
# here, torch-free, so that a package's model section can check them before torch is imported.
SCORE_FUNCS = ("softmax", "sigmoid")
SHARED_MIXES = ("add", "coef")


@dataclass
class ModelConfig:
    """Shape of the dense LLaMA-style decoder (the baseline every package compares against).

    ``init_from`` loads weights from a HF Llama / DecoderLM checkpoint directory (post-training
    papers); the shape fields are then taken from that checkpoint. The value ``$REPRO_BASE``
    means the environment variable of that name, falling back to ``runs/base/final``.
    """

    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    init_from: str | None = None

    def __post_init__(self) -> None:
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            value = getattr(self, key)
            check(isinstance(value, int) and value > 0, f"model.{key}", value, "a positive integer")
        check(
            self.hidden_size % self.num_attention_heads == 0,
            "model.hidden_size",
            self.hidden_size,
            f"a multiple of model.num_attention_heads={self.num_attention_heads}",
        )
        kv = self.num_key_value_heads or self.num_attention_heads
        check(
            kv > 0 and self.num_attention_heads % kv == 0,
            "model.num_key_value_heads",
            self.num_key_value_heads,
            f"a divisor of model.num_attention_heads={self.num_attention_heads}",
        )
        check(self.rope_theta > 0, "model.rope_theta", self.rope_theta, "a positive number")

    def decoder_kwargs(self, vocab_size: int, max_position_embeddings: int) -> dict:
        """Keyword arguments of :class:`~repro_core.modeling.DecoderConfig` for this shape."""
        return dict(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            rope_theta=self.rope_theta,
            tie_word_embeddings=self.tie_word_embeddings,
            initializer_range=self.initializer_range,
            max_position_embeddings=max_position_embeddings,
        )

    def build(self, vocab_size: int, max_position_embeddings: int):
        """Create the model (fresh, or loaded from ``init_from``). Packages override this."""
        from .modeling import DecoderConfig, DecoderLM, load_llama_checkpoint

        if self.init_from:
            return load_llama_checkpoint(resolve_base(self.init_from))
        return DecoderLM(DecoderConfig(**self.decoder_kwargs(vocab_size, max_position_embeddings)))


def resolve_base(spec: str) -> str:
    """``$REPRO_BASE`` -> the env var, else ``runs/base/final``; anything else unchanged.

    Raises :class:`MissingInputError` when the checkpoint directory has no ``config.json``.
    """
    if spec == "$REPRO_BASE":
        spec = os.environ.get("REPRO_BASE", "runs/base/final")
        if not Path(spec, "config.json").exists():
            raise MissingInputError(
                f"base model {spec!r} not found: run `make base` (pretrains runs/base/final) or set "
                "REPRO_BASE to a HF Llama checkpoint directory"
            )
    elif not Path(spec, "config.json").exists():
        raise MissingInputError(
            f"model.init_from={spec!r} is not a model directory (no config.json): pass the "
            "output directory of save_pretrained, e.g. runs/base/final from `make base`"
        )
    return spec


@dataclass
class DataConfig:
    """What to train on.

    ``corpus``: a named corpus (``wikitext-2``, ``tinyshakespeare``), a local ``.txt``/``.jsonl``
    file or a directory of them, or a HF hub dataset id. ``tokenizer``: ``bpe:N`` (byte-level
    BPE with N tokens trained on the corpus), ``sentencepiece:N``, or a directory / hub id of a
    HF tokenizer. ``val_fraction`` splits corpora that have no validation split (last fraction
    of tokens). ``max_train_tokens`` truncates the training split (0 = all).
    ``tokenizer_sample_bytes``: a trained tokenizer sees the first this many bytes of the train
    split, streamed (0 = all). ``prepare_workers``: tokenizer processes of the prepare step the
    trainer runs when the shards are missing (0 = the cores, at most 8; see ``repro-prepare``).
    """

    corpus: str = "wikitext-2"
    tokenizer: str = "bpe:8192"
    seq_len: int = 256
    val_fraction: float = 0.1
    max_train_tokens: int = 0
    tokenizer_sample_bytes: int = 1_000_000_000
    prepare_workers: int = 0

    def __post_init__(self) -> None:
        check(
            isinstance(self.seq_len, int) and self.seq_len >= 2,
            "data.seq_len",
            self.seq_len,
            "an integer >= 2",
        )
        check(0 < self.val_fraction < 1, "data.val_fraction", self.val_fraction, "0 < value < 1")
        check(
            self.max_train_tokens >= 0,
            "data.max_train_tokens",
            self.max_train_tokens,
            ">= 0 (0 = all)",
        )
        check(bool(self.corpus), "data.corpus", self.corpus, "a corpus name, path or hub id")
        check(
            self.tokenizer_sample_bytes >= 0,
            "data.tokenizer_sample_bytes",
            self.tokenizer_sample_bytes,
            ">= 0 (0 = the whole train split)",
        )
        check(self.prepare_workers >= 0, "data.prepare_workers", self.prepare_workers, ">= 0")


@dataclass
class TrainConfig:
    """Optimisation, evaluation, logging and checkpointing.

    ``batch_size`` is the micro-batch per process; tokens per optimizer step =
    batch_size * grad_accum * processes * seq_len. ``eval_batches`` = 0 evaluates the whole
    validation split. ``position_loss_points`` > 0 records the validation loss per token position
    at that many log-spaced steps (``position_loss.npz``). ``trainable`` is a regex: only
    parameters whose name matches it are trained (None = all). ``gradient_checkpointing``
    recomputes each decoder layer in the backward pass (less activation memory, ~1/3 more
    compute). ``compile`` runs the model through ``torch.compile``. ``loss_chunk_tokens``: the
    training loss is computed over chunks of this many tokens, so the (batch, seq, vocab) fp32
    logits are never materialised (0 = one chunk, the plain cross-entropy).
    """

    max_steps: int = 300
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    eval_every: int = 100
    eval_batches: int = 16
    log_every: int = 10
    save_every: int = 0
    keep_checkpoints: int = 2
    position_loss_points: int = 0
    trainable: str | None = None
    wandb: bool = False
    wandb_project: str = "repro"
    progress: bool = True
    gradient_checkpointing: bool = False
    compile: bool = False
    loss_chunk_tokens: int = 4096

    def __post_init__(self) -> None:
        for key in ("max_steps", "batch_size", "grad_accum"):
            value = getattr(self, key)
            check(isinstance(value, int) and value > 0, f"train.{key}", value, "a positive integer")
        check(self.lr > 0, "train.lr", self.lr, "a positive number")
        check(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio", self.min_lr_ratio, "0..1")
        check(
            0 <= self.warmup_steps <= self.max_steps,
            "train.warmup_steps",
            self.warmup_steps,
            f"0..train.max_steps={self.max_steps}",
        )
        check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, ">= 0")
        check(
            0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
            "train.beta1/beta2",
            (self.beta1, self.beta2),
            "values in [0, 1)",
        )
        check(self.grad_clip >= 0, "train.grad_clip", self.grad_clip, ">= 0 (0 = off)")
        for key in (
            "eval_every",
            "eval_batches",
            "log_every",
            "save_every",
            "position_loss_points",
        ):
            value = getattr(self, key)
            check(
                isinstance(value, int) and value >= 0,
                f"train.{key}",
                value,
                "an integer >= 0 (0 = off/all)",
            )
        check(self.keep_checkpoints >= 1, "train.keep_checkpoints", self.keep_checkpoints, ">= 1")
        check(
            self.loss_chunk_tokens >= 0, "train.loss_chunk_tokens", self.loss_chunk_tokens, ">= 0"
        )


@dataclass
class RunConfig:
    """One training run: model, data, optimisation, seed and a name for the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    name: str = "run"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------------------------
# Building dataclasses from dicts with type checking


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}={value!r} is invalid")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is invalid: allowed one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} is invalid: allowed a list")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} is invalid: allowed a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} is invalid: allowed true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}={value!r} is invalid: allowed an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r} is invalid: allowed a number")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is invalid: allowed a string")
        return str(value)
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Instantiate dataclass ``cls`` from ``data``; unknown keys raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key(s) {[where + k for k in unknown]}; allowed keys of "
            f"{prefix or cls.__name__}: {names}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def set_by_path(data: dict, dotted: str, raw: str) -> None:
    """Apply one ``a.b=value`` override to a nested dict; the value is parsed as YAML."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None


def run_config_class(model_config_cls: type[ModelConfig]) -> type[RunConfig]:
    """A RunConfig whose ``model`` section is ``model_config_cls`` (a package's subclass)."""
    if model_config_cls is ModelConfig:
        return RunConfig

    return dataclasses.make_dataclass(
        f"RunConfig_{model_config_cls.__name__}",
        [("model", model_config_cls, field(default_factory=model_config_cls))],
        bases=(RunConfig,),
    )


def find_preset(name: str, preset_dirs: list[Path]) -> Path:
    """Resolve a preset name (``tiny``) or a YAML path against the package's preset folders."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    for d in preset_dirs:
        candidate = Path(d) / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    available = sorted(
        {p.stem for d in preset_dirs if Path(d).is_dir() for p in Path(d).glob("*.yaml")}
    )
    raise ConfigError(
        f"preset {name!r} not found; available presets: {available} (or pass a .yaml path)"
    )


def load_config(
    preset: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    model_config_cls: type[ModelConfig] = ModelConfig,
    preset_dirs: list[Path] | None = None,
) -> RunConfig:
    """Load a preset (name or path), apply ``key=value`` overrides, validate, return the config."""
    data: dict = {}
    if preset is not None:
        path = find_preset(str(preset), preset_dirs or [])
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping with sections model/data/train")
        data = loaded
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        set_by_path(data, key.strip(), raw.strip())
    return from_dict(run_config_class(model_config_cls), data)


def package_preset_dirs(module_file: str) -> list[Path]:
    """Preset folders of a package: ``configs/`` beside ``src/`` in a checkout, or the copy
    shipped inside the wheel (``<package>/_configs``)."""
    here = Path(module_file).resolve().parent
    return [here / "_configs", here.parents[1] / "configs"]


__all__ = [
    "ConfigError",
    "MissingInputError",
    "UserError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "SCORE_FUNCS",
    "SHARED_MIXES",
    "TrainConfig",
    "find_preset",
    "from_dict",
    "load_config",
    "package_preset_dirs",
    "resolve_base",
    "run_config_class",
]
