"""The performance suite runs end to end on tiny shapes (the only perf code in `make test`).

Only the core's case runs for real: each package's quick cases are the package's business (and
together they take minutes); a fake registered group checks the registration point instead.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from repro_benchmarks import perf


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny shapes on a busy 2-core machine: thread spinning would dominate the smoke run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_core_suite_writes_markdown_and_json(tmp_path):
    assert perf.main(["--quick", "--repeats", "2", "--only", "core", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "perf.json").read_text())
    assert report["peak_gflops"] > 0 and report["repeats"] == 2 and report["failed"] == []
    (case,) = report["cases"]
    assert case["group"] == "core" and case["candidate"] == "repro_core.DecoderLM"
    assert case["baseline"].startswith("transformers.LlamaForCausalLM")
    assert case["candidate_median"] > 0 and case["baseline_median"] > 0
    assert case["ratio_min"] <= case["ratio_median"] <= case["ratio_max"]
    assert case["candidate_peak_fraction"] > 0 and case["baseline_peak_fraction"] > 0
    table = (tmp_path / "perf.md").read_text()
    assert "matmul peak" in table and "| repro_core.DecoderLM |" in table
    assert f"**{case['ratio_median']:.2f}x**" in table


def test_registered_groups_run_and_broken_ones_are_listed(tmp_path, monkeypatch):
    a, b = torch.randn(64, 64), torch.randn(64, 64)

    def perf_cases(quick):
        return [
            {
                "name": "toy matmul",
                "unit": "items",
                "work": 1,
                "flops": 2 * 64**3,
                "candidate": ("a @ b", lambda: a @ b),
                "baseline": ("torch.mm", lambda: torch.mm(a, b)),
            }
        ]

    def broken():
        raise ModuleNotFoundError("No module named 'repro_broken.bench'")

    eps = [
        SimpleNamespace(name="toy", value="repro_toy.bench:perf_cases", load=lambda: perf_cases),
        SimpleNamespace(name="broken", value="repro_broken.bench:perf_cases", load=broken),
    ]
    monkeypatch.setattr(perf, "entry_points", lambda group: eps if group == "repro.perf" else [])
    assert (
        perf.main(["--quick", "--repeats", "2", "--only", "toy,broken", "--out", str(tmp_path)])
        == 0
    )
    report = json.loads((tmp_path / "perf.json").read_text())
    assert [(c["group"], c["name"]) for c in report["cases"]] == [("toy", "toy matmul")]
    assert report["failed"][0]["group"] == "broken"
    assert "repro_broken.bench" in (tmp_path / "perf.md").read_text()
