"""A newcomer's first hour: the README's commands, in order, in a clean clone, hub unreachable.

The repository is cloned (committed state) into a temporary folder with the data folder beside
it (``<tmp>/shared/data``, as ``../shared/data`` of a checkout); the current virtual environment is
reused (``uv run --frozen --no-sync`` with ``UV_PROJECT_ENVIRONMENT``, the clone's sources first
on ``PYTHONPATH``), ``REPRO_DATA_DIR`` and ``HF_HUB_OFFLINE`` are unset and ``HF_ENDPOINT`` points
at a closed local port, so nothing can come from the hub. Each command's exit status and first
error line are checked. The quick start uses the ``debug`` preset (tinyshakespeare: no test split).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from repro_core.data import data_dir

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def first_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[0] if lines else ""


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """(run(cmd) -> CompletedProcess, clone path)."""
    uv = os.environ.get("UV") or shutil.which("uv")
    data = data_dir()
    if uv is None or data is None or sys.prefix == sys.base_prefix:
        pytest.skip("needs uv, a virtual environment and the data folder")
    if subprocess.run(["git", "-C", ROOT, "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    tmp = tmp_path_factory.mktemp("newcomer")
    clone = tmp / "repro"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    (tmp / "shared").mkdir()
    (tmp / "shared" / "data").symlink_to(data)
    sources = [clone / "shared" / "src", clone / "benchmarks" / "src"]
    sources += sorted((clone / "packages").glob("*/src"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "REPRO_DATA_DIR",
            "HF_HUB_OFFLINE",
            "HF_DATASETS_OFFLINE",
            "HF_DATASETS_DISABLE_PROGRESS_BARS",  # the commands silence the split bars themselves
            "VIRTUAL_ENV",
        )
    }
    env.update(
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing listens there: the hub is unreachable
        UV_PROJECT_ENVIRONMENT=sys.prefix,
        PYTHONPATH=os.pathsep.join(map(str, sources)),
        UV=uv,
        OMP_NUM_THREADS="1",
    )

    def run(cmd: str, timeout: int = 600) -> subprocess.CompletedProcess:
        """Run a README command line (``uv run ...``: in the reused venv, not synced)."""
        if cmd.startswith(("uv run ", "REPRO_DATA_DIR")):
            cmd = cmd.replace("uv run ", f"{uv} run --frozen --no-sync ", 1)
        cmd = cmd.replace("python -c", f"{sys.executable} -c")
        return subprocess.run(
            cmd, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run, clone


def test_readme_commands_in_order(newcomer):
    run, clone = newcomer
    readme = (clone / "README.md").read_text()
    uv = os.environ.get("UV") or shutil.which("uv")
    make_quickstart = f'make quickstart PRESET=debug UV=true RUN="{uv} run --frozen --no-sync"'

    # 1. the quick start (make setup is a no-op here: UV=true; the venv is this one)
    assert "make quickstart" in readme
    start = time.perf_counter()
    done = run(make_quickstart)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[done] val loss" in done.stdout and "make quickstart: wall time" in done.stdout
    assert (clone / "runs" / "quickstart" / "final" / "model.safetensors").is_file()
    assert "Setting accelerator to CPU" not in done.stdout + done.stderr  # no DeepSpeed import
    assert "Generating" not in done.stderr  # no datasets split bars
    quickstart_seconds = time.perf_counter() - start

    # 2. evaluate it, with the run's own data settings (tinyshakespeare has no test split)
    assert "uv run repro-eval --run runs/quickstart --split test" in readme
    done = run("uv run repro-eval --run runs/quickstart --split validation --batches 2")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["corpus"] == "tinyshakespeare" and result["bits_per_byte"] > 0
    done = run("uv run repro-eval --run runs/quickstart --split test")
    assert done.returncode == 2
    assert first_error(done.stderr) == (
        "error: split 'test' not in corpus 'tinyshakespeare'; available: ['train', 'validation']"
    )

    # 3. the model loads in plain transformers (nothing of ours imported)
    done = run(
        'python -c "import sys; from transformers import AutoModelForCausalLM as M; '
        "m = M.from_pretrained('runs/quickstart/final'); "
        "print(type(m).__name__, [k for k in sys.modules if k.startswith('repro')])\""
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "LlamaForCausalLM []"

    # 4. your own text
    text = (data_dir() / "tinyshakespeare" / "input.txt").read_text()[:200_000]
    (clone / "my.txt").write_text(text)
    assert "--set data.corpus=" in readme
    done = run(
        "uv run repro-train --preset debug --set data.corpus=my.txt --run-dir runs/mine "
        "--set train.max_steps=4 --set train.eval_every=0"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Generating" not in done.stderr  # datasets' split bars are silenced
    config = (clone / "runs" / "mine" / "config.yaml").read_text()
    assert f"corpus: {clone / 'my.txt'}" in config  # recorded absolute: eval works from anywhere

    # 5. a config error: one line, status 2, quickly
    start = time.perf_counter()
    done = run("uv run repro-train --preset debug --set train.lr=-1")
    assert done.returncode == 2
    assert first_error(done.stderr) == "error: train.lr=-1.0 is invalid: allowed a positive number"
    assert "Traceback" not in done.stderr

    # 6. a corpus found nowhere, hub unreachable (HF_HUB_OFFLINE unset): fails fast, one line
    done = run("REPRO_DATA_DIR=/no/such/folder uv run repro-train --preset debug --run-dir runs/x")
    assert done.returncode == 2
    assert first_error(done.stderr).startswith(
        "error: corpus 'tinyshakespeare': no local copy at REPRO_DATA_DIR=/no/such/folder and "
        "the hub is offline."
    )
    checks_seconds = time.perf_counter() - start
    assert checks_seconds < quickstart_seconds  # no torch import, no retry loop

    # 7. a second run into the same directory is refused; the finished run is intact
    before = (clone / "runs" / "quickstart" / "results.json").read_bytes()
    done = run(make_quickstart)
    assert done.returncode != 0
    err = first_error(done.stderr)
    assert err.startswith("error: runs/quickstart already holds a finished run")
    assert "--resume" in err and "--overwrite" in err
    assert (clone / "runs" / "quickstart" / "results.json").read_bytes() == before
    assert "make quickstart ARGS=--overwrite" in readme
