"""Checks of the UniAttn grid before its workers start (no torch): every arm's config and step
budget, and the base checkpoint. (Finished runs made under another preset are refused by the
core: each run's record carries its config's fingerprint, ``repro_core.experiment.load_result``.)
"""

from __future__ import annotations

from pathlib import Path

from repro_core.config import load_config, package_preset_dirs, resolve_base
from repro_core.experiment import ExperimentError

from .config import UniAttnModelConfig


def load_arm_config(preset: str, overrides):
    """The grid's ``config_loader``: the run's config, its stage budget checked (ConfigError)."""
    cfg = load_config(preset, list(overrides), UniAttnModelConfig, package_preset_dirs(__file__))
    cfg.model.stage_steps(cfg.train.max_steps)
    return cfg


def check_base(preset: str, extra: tuple[str, ...]) -> None:
    """Every arm post-trains ``model.init_from``: fail once, before the workers, if it is missing."""
    from .costs import arm_config

    init_from = arm_config(preset, list(extra)).model.init_from
    if not init_from:
        raise ExperimentError(
            f"preset {preset!r} has no model.init_from: the grid post-trains a base checkpoint. Run "
            "`make base` (tiny presets read $REPRO_BASE, default runs/base/final) or pass "
            "--set model.init_from=DIR"
        )
    try:
        path = resolve_base(init_from)
    except FileNotFoundError as err:
        raise ExperimentError(str(err)) from None
    hub_id = not Path(path).is_absolute() and path.count("/") == 1 and not Path(path).exists()
    if not hub_id and not Path(path, "config.json").is_file():
        raise ExperimentError(
            f"model.init_from={path!r} is not a model directory (no config.json): pass the output "
            "of save_pretrained, e.g. runs/base/final from `make base`"
        )


__all__ = ["check_base", "load_arm_config"]
