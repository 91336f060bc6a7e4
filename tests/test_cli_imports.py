"""Every command line checks its input before it imports the heavy stack.

For every console script declared in a workspace member's ``pyproject.toml`` (read from the
TOML, so a new script is covered without editing this file), a fresh interpreter imports the
script's module and then calls its ``main`` with bad arguments: a trainer (``*-train``) gets an
unknown config key (``--set model.nosuch=1``) and a missing preset, every other script an unknown
option (its error may name a missing required argument first; either way the core
``ArgumentParser`` says it in one line). Each user error must be one line ``error: ...`` on stderr naming the bad input, with exit
status 2 and no traceback, and neither the import nor the failed calls may have imported torch,
transformers or datasets (so the error comes back in about a second instead of after the ~10 s
those take to import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets")

# Scripts whose every path needs the heavy stack, with the reason; they are only required to
# give the one-line error, not to avoid the import. Empty: every script checks its input first.
NEEDS_HEAVY_IMPORT: dict[str, str] = {}

PROBE = f"""
import contextlib, importlib, io, json, sys
heavy = {HEAVY!r}
target, calls = sys.argv[1], json.loads(sys.argv[2])
module, _, attr = target.partition(":")
main = importlib.import_module(module)
for part in attr.split("."):
    main = getattr(main, part)
after_import = [m for m in heavy if m in sys.modules]
results = []
for argv in calls:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append({{"code": code, "stderr": err.getvalue()}})
print(json.dumps({{"calls": results, "after_import": after_import,
                  "after_main": [m for m in heavy if m in sys.modules]}}))
"""


def console_scripts() -> list[tuple[str, str]]:
    """``(script name, "module:function")`` of every ``[project.scripts]`` entry of every
    workspace member (``[tool.uv.workspace] members`` of the root ``pyproject.toml``)."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for pyproject in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            project = tomllib.loads(pyproject.read_text()).get("project", {})
            found += sorted(project.get("scripts", {}).items())
    return found


SCRIPTS = console_scripts()


def bad_calls(script: str) -> list[tuple[list[str], str]]:
    """``(argv, text the error line must hold)`` of each bad call of ``script``."""
    if script.endswith("-train"):
        return [
            (["--preset", "tiny", "--set", "model.nosuch=1"], "model.nosuch"),
            (["--preset", "no-such-preset"], "no-such-preset"),
        ]
    return [(["--no-such-option"], "--help")]  # '(see PROG --help)': the core ArgumentParser


def test_the_workspace_declares_the_scripts_this_test_is_about():
    names = {name for name, _ in SCRIPTS}
    assert {"repro-train", "repro-eval", "repro-perf", "repro-maskmoe-train"} <= names
    assert len(names) >= 25, sorted(names)
    assert set(NEEDS_HEAVY_IMPORT) <= names, "the allow-list names a script that is gone"


@pytest.mark.parametrize("script,target", SCRIPTS, ids=[name for name, _ in SCRIPTS])
def test_a_bad_argument_is_one_error_line_with_status_2_and_no_heavy_import(
    script, target, tmp_path
):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    calls = bad_calls(script)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, target, json.dumps([argv for argv, _ in calls])],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no runs/ or results of the checkout in reach
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for (argv, expected), call in zip(calls, report["calls"], strict=True):
        lines = [line for line in call["stderr"].splitlines() if line.strip()]
        assert "Traceback" not in call["stderr"], (argv, call["stderr"])
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, call["stderr"])
        assert expected in lines[0], (argv, lines[0])
        assert call["code"] == 2, (argv, call)
    if script not in NEEDS_HEAVY_IMPORT:
        assert report["after_import"] == [], f"importing {target} imports {report['after_import']}"
        assert report["after_main"] == [], (
            f"{script} imports {report['after_main']} before its checks"
        )
