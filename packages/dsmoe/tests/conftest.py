"""The workspace runs pytest with ``--import-mode=importlib``, which does not put this folder on
sys.path; the shared helpers live in ``dsmoe_helpers.py`` (a name unique in the workspace)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
