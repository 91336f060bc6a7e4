"""repro-benchmarks: lm-eval on every repro package (offline task YAMLs) and the performance suite.

Installing this distribution brings lm-eval (the paper packages do not depend on it); the
adapter itself lives in the core, :mod:`repro_core.harness`.

* ``repro-bench`` (``make bench``): :mod:`repro_benchmarks.run`.
* ``repro-perf`` (``make perf``): :mod:`repro_benchmarks.perf`.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parents[1]  # benchmarks/ in a source checkout (src/repro_benchmarks/..)


def tasks_dir() -> Path:
    """The offline lm-eval task YAMLs: ``benchmarks/tasks`` in a checkout, ``_tasks`` in a wheel."""
    installed = _HERE / "_tasks"
    return installed if installed.is_dir() else _CHECKOUT / "tasks"


def results_dir() -> Path:
    """``benchmarks/results`` in a checkout; ``./bench-results`` when installed from a wheel."""
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "tasks").is_dir():
        return _CHECKOUT / "results"
    return Path.cwd() / "bench-results"
