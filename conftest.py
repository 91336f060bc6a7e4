"""Test-wide environment: local data, a persistent token cache, no network, few threads."""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
_data = ROOT.parent / "shared" / "data"
if "REPRO_DATA_DIR" not in os.environ and _data.is_dir():
    os.environ["REPRO_DATA_DIR"] = str(_data)
os.environ.setdefault("REPRO_CACHE_DIR", str(Path(tempfile.gettempdir()) / "repro-test-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
# `make test` runs two pytest workers on two cores: one thread each. Two OpenMP threads per
# worker oversubscribe the cores and make torch many times slower, not 2x faster.
os.environ.setdefault("OMP_NUM_THREADS", "1")
