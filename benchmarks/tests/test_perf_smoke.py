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
    assert case["ratio_min"] <= case["ratio_median"] <= case["ratio_max"]
    for side in ("candidate", "baseline"):
        assert case[f"{side}_peak_fraction"] == pytest.approx(
            case[f"{side}_gflops"] / report["peak_gflops"]
        )
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


class FakeClock:
    """``time.perf_counter`` stand-in: each call of a timed function advances it by a set time."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def taking(self, seconds: list[float]):
        it = iter(seconds)

        def fn():
            self.now += next(it)

        return fn


def test_run_case_reports_rates_ratios_and_peak_fraction_of_the_timed_calls(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(perf, "time", clock)
    # 2 warm-up calls each, then 3 timed: candidate 1, 2, 4 s; baseline 2, 2, 2 s
    case = {
        "name": "toy",
        "unit": "tokens",
        "work": 100,
        "flops": 4e9,
        "candidate": ("c", clock.taking([9, 9, 1, 2, 4])),
        "baseline": ("b", clock.taking([9, 9, 2, 2, 2])),
    }
    out = perf.run_case(case, repeats=3, peak_gflops=4.0)
    assert out["candidate_median"] == 50.0  # rates 100, 50, 25 tokens/s
    assert out["baseline_median"] == 50.0
    assert (out["ratio_min"], out["ratio_median"], out["ratio_max"]) == (0.5, 1.0, 2.0)
    assert out["candidate_gflops"] == 2.0 and out["baseline_gflops"] == 2.0  # 4 GFLOP / 2 s
    assert out["candidate_peak_fraction"] == 0.5
    assert out["unit"] == "tokens/s" and out["repeats"] == 3


def test_matmul_peak_is_the_fastest_of_the_timed_products(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(perf, "time", clock)
    real_randn = torch.randn
    durations = iter([1.0, 1.0, 0.5, 0.25, 2.0])  # 2 warm-up, 3 timed
    monkeypatch.setattr(  # perf imports torch when it times (the module itself stays torch-free)
        torch, "randn", lambda *shape: _Timed(real_randn(*shape), clock, durations)
    )
    assert perf.matmul_peak_gflops(size=8, repeats=3) == 2 * 8**3 / 0.25 / 1e9


class _Timed:
    """A matrix whose ``@`` advances the fake clock."""

    def __init__(self, value, clock, durations):
        self.value, self.clock, self.durations = value, clock, durations

    def __matmul__(self, other):
        self.clock.now += next(self.durations)
        return self.value @ other.value


def test_package_readme_speed_blocks_equal_the_committed_perf_json():
    """No speed number in a package README is typed by hand: each marked block is exactly what
    ``make perf`` renders from ``benchmarks/results/perf.json``."""
    from repro_benchmarks import results_dir

    report = json.loads((results_dir() / "perf.json").read_text())
    checked = []
    for group in dict.fromkeys(c["group"] for c in report["cases"]):
        readme = perf.package_readme(group)
        if readme is None or perf.README_START not in readme.read_text():
            continue
        text = readme.read_text()
        block = text.split(perf.README_START, 1)[1].split(perf.README_END, 1)[0]
        assert block == "\n" + perf.group_markdown(report, group) + "\n", readme
        checked.append(group)
    assert "cartesian_moe" in checked


def test_update_package_readmes_rewrites_only_marked_readmes(tmp_path):
    marked, plain = tmp_path / "marked.md", tmp_path / "plain.md"
    marked.write_text(f"# A\n\n{perf.README_START}\nold 1.24x\n{perf.README_END}\n\nrest\n")
    plain.write_text("# B\n1.24x\n")
    report = {
        "date": "2026-12-03",
        "hardware": "cpu",
        "threads": 1,
        "repeats": 3,
        "command": "repro-perf",
        "cases": [
            {
                "group": "a",
                "name": "case a",
                "candidate": "x",
                "baseline": "y",
                "unit": "tokens/s",
                "candidate_median": 790.0,
                "baseline_median": 1000.0,
                "ratio_median": 0.79,
                "ratio_min": 0.78,
                "ratio_max": 0.83,
            },
        ],
    }
    report["cases"].append({**report["cases"][0], "group": "b"})
    readmes = {"a": marked, "b": plain}
    assert perf.update_package_readmes(report, readmes.get) == [marked]
    text = marked.read_text()
    assert "1.24x" not in text and "**0.79x** (0.78..0.83)" in text and text.endswith("rest\n")
    assert "| case a | x | y | 790 tokens/s | 1,000 tokens/s |" in text
    assert plain.read_text() == "# B\n1.24x\n"
