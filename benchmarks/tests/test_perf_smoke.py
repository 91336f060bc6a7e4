"""The performance suite runs end to end on tiny shapes (the only perf code in `make test`)."""

from __future__ import annotations

import json

from repro_benchmarks.perf import main


def test_quick_suite_writes_markdown_and_json(tmp_path):
    assert main(["--quick", "--repeats", "2", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "perf.json").read_text())
    assert report["peak_gflops"] > 0 and report["repeats"] == 2
    core = [c for c in report["cases"] if c["group"] == "core"]
    assert len(core) == 1
    case = core[0]
    assert case["candidate"] == "repro_core.DecoderLM"
    assert case["baseline"].startswith("transformers.LlamaForCausalLM")
    assert case["candidate_median"] > 0 and case["baseline_median"] > 0
    assert case["ratio_min"] <= case["ratio_median"] <= case["ratio_max"]
    assert 0 < case["candidate_peak_fraction"] and 0 < case["baseline_peak_fraction"]
    table = (tmp_path / "perf.md").read_text()
    assert "matmul peak" in table and "| repro_core.DecoderLM |" in table
    assert f"**{case['ratio_median']:.2f}x**" in table
