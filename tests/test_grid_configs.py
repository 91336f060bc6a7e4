"""Every arm of every package's grid loads at every preset the package ships.

A grid only checks the configs of the preset it is started with, so an arm that cannot load
under ``paper`` (an override that clashes with that preset's defaults) would surface only when
someone starts the paper-scale grid. This loads them all, without torch, the way
``repro_core.experiment.main`` does before its workers start.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from repro_core.experiment import check_configs, make_spec

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("debug", "tiny", "small", "paper")
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())


def grid_of(slug: str):
    return importlib.import_module(f"repro_{slug}.reproduce").GRID


@pytest.mark.parametrize("slug", PACKAGES)
def test_every_arm_and_setting_loads_at_every_shipped_preset(slug):
    grid = grid_of(slug)
    if grid.config_loader is None:
        pytest.skip(f"{slug}: its grid declares no config_loader (configs built inside the runs)")
    presets = [p for p in PRESETS if (ROOT / "packages" / slug / "configs" / f"{p}.yaml").is_file()]
    assert "tiny" in presets and "debug" in presets, presets
    settings = list(grid.settings) or [""]
    for preset in presets:
        specs = [
            make_spec(grid, preset, arm.name, setting, grid.seeds[0])
            for arm in grid.arms
            for setting in (arm.settings or settings)
        ]
        check_configs(grid, specs)  # raises ExperimentError naming the arm that does not load
