"""Every command line checks its input before it imports the heavy stack.

For every console script declared in a workspace member's ``pyproject.toml`` (read from the
TOML, so a new script is covered without editing this file), a fresh interpreter imports the
script's module and then calls its ``main`` with a bad argument: a trainer (``*-train``) gets an
unknown config key (``--set model.nosuch=1``), every other script an unknown option. The user
error must be one line ``error: ...`` on stderr with exit status 2, no traceback, and neither the
import nor the failed call may have imported torch, transformers or datasets (so the error comes
back in about a second instead of after the ~10 s those take to import).
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

PROBE = """
import importlib, json, sys
heavy = {heavy!r}
target, *argv = sys.argv[1:]
module, _, attr = target.partition(":")
main = importlib.import_module(module)
for part in attr.split("."):
    main = getattr(main, part)
after_import = [m for m in heavy if m in sys.modules]
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "after_import": after_import,
                  "after_main": [m for m in heavy if m in sys.modules]}}))
""".format(heavy=HEAVY)


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


def bad_arguments(script: str) -> list[str]:
    if script.endswith("-train"):
        return ["--preset", "tiny", "--set", "model.nosuch=1"]
    return ["--no-such-option"]


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
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, target, *bad_arguments(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no runs/ or results of the checkout in reach
        env=env,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    if script.endswith("-train"):
        assert "model.nosuch" in lines[0], lines[0]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 2, report
    if script not in NEEDS_HEAVY_IMPORT:
        assert report["after_import"] == [], f"importing {target} imports {report['after_import']}"
        assert report["after_main"] == [], f"{script} imports {report['after_main']} before its checks"
