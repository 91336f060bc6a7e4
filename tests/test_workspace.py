"""Workspace consistency: every package has the parts a user relies on, dependencies run one way."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())


def test_root_is_a_virtual_workspace_with_every_member():
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root["tool"]["uv"]["package"] is False
    assert set(root["tool"]["uv"]["workspace"]["members"]) == {"shared", "packages/*", "benchmarks"}
    lock = (ROOT / "uv.lock").read_text()
    for member in ["repro-core", "repro-benchmarks"] + [
        f"repro-{p.name.replace('_', '-')}" for p in PACKAGES
    ]:
        assert f'name = "{member}"' in lock, f"{member} missing from uv.lock: run `uv lock`"


def test_readme_quick_start_is_the_two_make_targets():
    readme = (ROOT / "README.md").read_text()
    assert "make quickstart" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    for target in (
        "setup",
        "quickstart",
        "test",
        "lint",
        "base",
        "reproduce-%",
        "reproduce-all",
        "bench",
        "perf",
        "help",
    ):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"Makefile lacks {target}"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_has_the_required_parts(package):
    slug = package.name
    meta = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert meta["name"] == f"repro-{slug.replace('_', '-')}"
    assert any(d.startswith("repro-core") for d in meta["dependencies"])
    others = [
        d for d in meta["dependencies"] if d.startswith("repro-") and not d.startswith("repro-core")
    ]
    assert not others, f"{slug} depends on another paper package: {others}"
    for part in ("README.md", "configs", "tests", f"src/repro_{slug}"):
        assert (package / part).exists(), f"{slug} lacks {part}"


def test_core_never_imports_a_paper_package():
    core = ROOT / "shared" / "src" / "repro_core"
    slugs = [p.name for p in PACKAGES]
    for f in core.rglob("*.py"):
        text = f.read_text()
        for slug in slugs:
            assert f"repro_{slug}" not in text, (
                f"{f} imports repro_{slug}: dependencies run one way"
            )


def test_no_unsafe_loading_in_the_repository():
    """Loading never executes code from a file: no remote code, torch.load only with weights_only."""
    load_call = "torch" + r"\.load\("  # split so this file does not match itself
    remote = "trust_remote_code" + r" *= *True"
    out = subprocess.run(
        ["git", "grep", "-n", "-E", f"{remote}|{load_call}", "--", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    unsafe = [line for line in out.splitlines() if "weights_only=True" not in line]
    assert not unsafe, unsafe
