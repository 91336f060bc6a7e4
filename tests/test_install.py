"""What a user does: build wheels, pip-install the core and one package into a fresh virtual
environment, and run the train entry point on the debug preset.

Uses uv's package cache (filled by `uv sync`), so torch is not downloaded again.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def uv() -> list[str]:
    """The uv that runs this session (``uv run`` exports it as $UV), else the one on PATH."""
    exe = os.environ.get("UV") or shutil.which("uv")
    if not exe:
        pytest.skip("uv is not installed: run the tests through `make test`")
    return [exe]


def sh(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc


def trainable_package() -> Path | None:
    """A paper package with a model train entry point and a debug preset."""
    for pkg in sorted((ROOT / "packages").iterdir()):
        scripts = tomllib.loads((pkg / "pyproject.toml").read_text())["project"].get("scripts", {})
        if (
            f"repro-{pkg.name.replace('_', '-')}-train" in scripts
            and (pkg / "configs" / "debug.yaml").is_file()
        ):
            return pkg
    return None


def test_wheels_install_into_a_fresh_venv_and_train(tmp_path):
    dist = tmp_path / "dist"
    package = trainable_package()
    targets = [ROOT / "shared"] + ([package] if package else [])
    for target in targets:
        sh([*uv(), "build", "--wheel", "--out-dir", dist, target])
    venv = tmp_path / "venv"
    sh([*uv(), "venv", "--python", sys.executable, venv])
    python = venv / "bin" / "python"
    # the lock's versions, so nothing new is resolved or downloaded
    constraints = tmp_path / "constraints.txt"
    sh(
        [
            *uv(),
            "export",
            "--frozen",
            "--no-hashes",
            "--all-packages",
            "--no-emit-workspace",
            "-o",
            constraints,
        ],
        cwd=ROOT,
    )
    sh(
        [
            *uv(),
            "pip",
            "install",
            "--python",
            python,
            "-c",
            constraints,
            *sorted(dist.glob("*.whl")),
        ]
    )
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    run = tmp_path / "runs"
    out = sh(
        [
            venv / "bin" / "repro-train",
            "--preset",
            "debug",
            "--run-dir",
            run / "core",
            "--set",
            "train.max_steps=4",
            "--set",
            "train.progress=false",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert "bits/byte" in out.stdout and (run / "core" / "final" / "model.safetensors").is_file()
    # the presets came from inside the wheel, not from the checkout
    sh(
        [
            python,
            "-c",
            "import repro_core, pathlib; p = pathlib.Path(repro_core.__file__).parent / '_configs';"
            " assert (p / 'debug.yaml').is_file(), p",
        ],
        cwd=tmp_path,
        env=env,
    )
    if package is not None:
        slug = package.name
        out = sh(
            [
                venv / "bin" / f"repro-{slug.replace('_', '-')}-train",
                "--preset",
                "debug",
                "--run-dir",
                run / slug,
                "--set",
                "train.max_steps=4",
                "--set",
                "train.progress=false",
            ],
            cwd=tmp_path,
            env=env,
        )
        assert (run / slug / "final" / "model.safetensors").is_file()
