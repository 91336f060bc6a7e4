"""Every committed results folder is what `reproduce.py --report-only` writes from its
results.json: results.md byte for byte, and the package README's generated block."""

import importlib
import json
import shutil
from pathlib import Path

import pytest
from repro_core import report

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(p.parent for p in ROOT.glob("packages/*/results/*/results.json"))


def made_by_the_core(results: dict) -> bool:
    """results.json written by repro_core.experiment (every run stamped)."""
    return "stamp" in json.dumps(results.get("runs", [])[:1])


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_report_only_reproduces_the_committed_results_md(folder, tmp_path):
    slug = folder.parents[1].name
    reproduce = importlib.import_module(f"repro_{slug}.reproduce")
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    (out / "results.md").unlink()
    assert reproduce.main(["--report-only", "--preset", folder.name, "--out", str(out)]) == 0
    assert (out / "results.md").read_bytes() == (folder / "results.md").read_bytes()
    results = json.loads((folder / "results.json").read_text())
    if folder.name == "tiny" and made_by_the_core(results):
        readme = (folder.parents[1] / "README.md").read_text()
        assert report.README_START + report.readme_block(results) + report.README_END in readme


def test_every_migrated_package_is_checked():
    migrated = {
        p.parents[1].name
        for p in FOLDERS
        if made_by_the_core(json.loads((p / "results.json").read_text()))
    }
    assert migrated >= {"finedeep", "cartesian_moe", "uniattn", "temporal_scaling_law"}
