"""Checks of the UniAttn grid before its workers start (no torch): every arm's config and step
budget, the base checkpoint, and finished runs made under another preset.

The core reuses a finished run when its arm overrides are unchanged; a change of the preset file
itself (the tiny grouping, the stage budget) would go unnoticed, so :func:`check_finished_runs`
compares each finished run's saved ``config.yaml`` with what the grid would train now.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from repro_core.config import load_config, package_preset_dirs, resolve_base
from repro_core.experiment import ExperimentError, make_spec, run_dir

from .config import UniAttnModelConfig

# train keys a finished run must share with the grid's config (its stage-2 trainer's)
TRAIN_KEYS = ("max_steps", "lr", "batch_size", "min_lr_ratio", "warmup_steps", "weight_decay")


def load_arm_config(preset: str, overrides):
    """The grid's ``config_loader``: the run's config, its stage budget checked (ConfigError)."""
    cfg = load_config(preset, list(overrides), UniAttnModelConfig, package_preset_dirs(__file__))
    cfg.model.stage_steps(cfg.train.max_steps)
    return cfg


def trained_config(cfg) -> dict:
    """What a run of ``cfg`` records in its ``config.yaml`` (the stage-2 trainer's config, or the
    converted-only arm's own): model fields but ``init_from``, the train keys, stage-2 steps."""
    model = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "init_from"}
    stage2 = cfg.model.stage2_train(cfg.train)
    return {"model": model, "train": {k: getattr(stage2, k) for k in TRAIN_KEYS}}


def config_differences(saved: dict, expected: dict) -> list[str]:
    """``section.key: saved -> expected`` for every expected key the saved config differs on
    (a key the saved config lacks counts as different)."""
    out = []
    for section, values in expected.items():
        have = saved.get(section) or {}
        for key, value in values.items():
            if key not in have or have[key] != value:
                out.append(f"{section}.{key}: {have.get(key, 'absent')!r} -> {value!r}")
    return out


def check_finished_runs(grid, preset: str, extra: tuple[str, ...]) -> None:
    """Raise ExperimentError when a finished run (``result.json``) of this preset was trained
    with another config than the grid's now, or has no ``config.yaml`` to tell."""
    import yaml

    stale = []
    for arm in grid.arms:
        folder = run_dir(grid, preset, arm.name, "", 0, extra).parent
        for result in sorted(folder.glob("seed*/result.json")):
            seed = int(result.parent.name.removeprefix("seed"))
            spec = make_spec(grid, preset, arm.name, "", seed, extra)
            saved_path = result.parent / "config.yaml"
            if not saved_path.is_file():
                stale.append(f"{result.parent} (no config.yaml)")
                continue
            expected = trained_config(grid.config_loader(preset, spec.overrides))
            diffs = config_differences(yaml.safe_load(saved_path.read_text()) or {}, expected)
            if diffs:
                stale.append(f"{result.parent} ({'; '.join(diffs[:3])})")
    if stale:
        raise ExperimentError(
            f"{len(stale)} finished run(s) were trained with another config than the grid's "
            f"now (an earlier preset?): {stale[0]}{' and others' if len(stale) > 1 else ''}; "
            "move them away (e.g. mv runs/uniattn runs/uniattn-old) or set REPRO_RUNS_DIR"
        )


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


__all__ = ["check_base", "check_finished_runs", "config_differences", "load_arm_config"]
