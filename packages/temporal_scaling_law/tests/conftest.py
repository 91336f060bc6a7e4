"""Fixtures. The synthetic-run generator lives in tsl_synthetic.py; the workspace runs pytest with
``--import-mode=importlib``, which does not put this folder on sys.path, so we add it here (the
module name is unique in the workspace)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tsl_synthetic import write_run  # noqa: E402


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    """A complete synthetic run directory in the core trainer's format."""
    return write_run(tmp_path / "run")
