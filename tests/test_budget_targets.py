"""`make budget-<slug>` trains the grid's own baseline at the tiny preset's shape.

The trainer command of each target is read from ``make -n`` (what make would run) and handed to
that package's trainer with ``--print-config``: the resolved config must be the tiny preset with
the baseline arm's overrides as the grid (``reproduce.py``) declares them, plus the long budget,
the eval interval and the constant learning rate. Nothing is trained.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLUGS = ("finedeep", "cartesian_moe", "scaffold_bpe")


def scripts() -> dict[str, str]:
    found = {}
    for pyproject in ROOT.glob("packages/*/pyproject.toml"):
        found.update(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))
    return found


def make_dry_run(target: str, *variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-n", "--no-print-directory", target, "UV=uv", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def trainer_command(slug: str, run_dir: Path) -> tuple[str, list[str]]:
    proc = make_dry_run(f"budget-{slug}", f"BUDGET_DIR={run_dir.parent}", "STEPS=2400")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.replace("\\\n", " ").splitlines() if "OMP_NUM_THREADS" in x)
    words = shlex.split(line)
    start = next(i for i, w in enumerate(words) if w.startswith("repro-") and w.endswith("-train"))
    args = words[start + 1 : words.index("||")]
    args = [str(run_dir) if a == "$dir" else a for a in args if a != "$flags"]
    return words[start], args


def baseline_overrides(slug: str) -> list[str]:
    reproduce = importlib.import_module(f"repro_{slug}.reproduce")
    if slug == "scaffold_bpe":  # the LM arm's tokenizer is set by run_one from the arm name
        return [f"data.tokenizer={reproduce.LM_TOKENIZER['lm-bpe']}:{reproduce.LM_SIZE}"]
    return list(reproduce.GRID.arm("dense").overrides)


@pytest.mark.parametrize("slug", SLUGS)
def test_the_budget_target_trains_the_grids_baseline_at_the_tiny_shape(slug, tmp_path):
    script, args = trainer_command(slug, tmp_path / slug)
    module, _, attr = scripts()[script].partition(":")
    main = getattr(importlib.import_module(module), attr)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, "--print-config"]) in (0, None)
    cfg = yaml.safe_load(out.getvalue())
    with contextlib.redirect_stdout(io.StringIO()) as tiny_out:
        main(["--preset", "tiny", *sum((["--set", o] for o in baseline_overrides(slug)), []),
              "--print-config"])  # fmt: skip
    tiny = yaml.safe_load(tiny_out.getvalue())
    assert cfg["model"] == tiny["model"] and cfg["data"] == tiny["data"]
    assert cfg["train"]["max_steps"] == 2400 and cfg["train"]["eval_every"] == 100
    assert cfg["train"]["min_lr_ratio"] == 1.0
    for key in ("batch_size", "lr", "warmup_steps", "eval_batches"):
        assert cfg["train"][key] == tiny["train"][key], key
    assert args[args.index("--run-dir") + 1] == str(tmp_path / slug)


def test_a_package_without_a_budget_baseline_is_one_error_line():
    proc = subprocess.run(
        ["make", "--no-print-directory", "budget-uniattn", "UV=true", "RUN=true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "error: no budget baseline for 'uniattn'; available: finedeep" in proc.stdout
