"""Performance suite: every case is a candidate against the obvious alternative, timed in one
process with the two interleaved, so a noisy machine moves both and the ratio stays honest.

``repro-perf`` (``make perf``) runs the core's cases and every case a package registers, and
writes ``benchmarks/results/perf.md`` + ``perf.json``. A package README that holds the markers
:data:`README_START` / :data:`README_END` gets its group's rows of that run between them (so no
speed number in a README is typed by hand); ``repro-perf --readmes-only`` rebuilds those blocks
from the existing ``perf.json`` without measuring.

Registering a case (no import of this package needed): in the package's ``pyproject.toml``::

    [project.entry-points."repro.perf"]
    finedeep = "repro_finedeep.bench:perf_cases"

where ``perf_cases(quick: bool) -> list[dict]`` returns cases of the form::

    {"name": "finedeep layer fwd+bwd", "unit": "tokens", "work": tokens_per_call,
     "flops": flops_per_call or None,              # for the fraction of the measured matmul peak
     "candidate": ("Finedeep (M=2,K=4)", fn),      # fn() runs one call
     "baseline": ("dense SwiGLU FFN", fn)}
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from importlib.metadata import entry_points
from pathlib import Path

from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import UserError
from repro_core.results import replace_block, write_text_atomic

from repro_benchmarks import results_dir


def time_interleaved(
    fns: list[Callable[[], object]], repeats: int, warmup: int = 2
) -> list[list[float]]:
    """Seconds per call of each function, alternating them ``repeats`` times after warmup."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return times


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    import torch

    """Measured fp32 GEMM throughput (GFLOP/s) of this machine: the MFU denominator on CPU."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    (seconds,) = time_interleaved([lambda: a @ b], repeats)
    return 2 * size**3 / min(seconds) / 1e9


def run_case(case: dict, repeats: int, peak_gflops: float) -> dict:
    (cand_label, cand), (base_label, base) = case["candidate"], case["baseline"]
    t_cand, t_base = time_interleaved([cand, base], repeats)
    work = case["work"]
    rate_c = [work / t for t in t_cand]
    rate_b = [work / t for t in t_base]
    ratios = [c / b for c, b in zip(rate_c, rate_b)]
    out = {
        "name": case["name"],
        "unit": f"{case.get('unit', 'items')}/s",
        "candidate": cand_label,
        "baseline": base_label,
        "candidate_median": statistics.median(rate_c),
        "baseline_median": statistics.median(rate_b),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "repeats": repeats,
    }
    if case.get("extra"):
        out["extra"] = case["extra"]
    flops = case.get("flops")
    if flops:
        cand_flops = case.get("candidate_flops", flops)
        base_flops = case.get("baseline_flops", flops)
        out["candidate_gflops"] = cand_flops / statistics.median(t_cand) / 1e9
        out["baseline_gflops"] = base_flops / statistics.median(t_base) / 1e9
        out["candidate_peak_fraction"] = out["candidate_gflops"] / peak_gflops
        out["baseline_peak_fraction"] = out["baseline_gflops"] / peak_gflops
    return out


# ----------------------------------------------------------------------------------------------
# The core's case: a training step of DecoderLM against HF LlamaForCausalLM


def core_cases(quick: bool = False) -> list[dict]:
    """Training step (forward + backward + AdamW) of DecoderLM vs LlamaForCausalLM, same weights."""
    import torch
    from repro_core import DecoderLM, flops_per_token
    from repro_core.modeling import decoder_config_from_llama
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=256,
    )
    if quick:
        shape.update(hidden_size=64, intermediate_size=176, num_hidden_layers=2, vocab_size=512)
    batch, seq = (2, 64) if quick else (8, 256)
    torch.manual_seed(0)
    llama_cfg = LlamaConfig(**shape)
    llama_cfg._attn_implementation = "sdpa"
    hf = LlamaForCausalLM(llama_cfg)
    ours = DecoderLM(decoder_config_from_llama(llama_cfg))
    ours.load_state_dict(hf.state_dict())
    x = torch.randint(0, shape["vocab_size"], (batch, seq))

    def step_fn(model):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def step():
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    params = sum(p.numel() for p in ours.parameters())
    tokens = batch * seq
    return [
        {
            "name": f"training step, {params / 1e6:.1f}M-param decoder, batch {batch}x{seq}",
            "unit": "tokens",
            "work": tokens,
            "flops": flops_per_token(ours, seq)["train"] * tokens,
            "candidate": ("repro_core.DecoderLM", step_fn(ours)),
            "baseline": ("transformers.LlamaForCausalLM (sdpa)", step_fn(hf)),
        }
    ]


def registered_cases(only: set[str] | None) -> list[tuple[str, Callable | None, str | None]]:
    """``(group, perf_cases or None, error or None)`` of the core and every ``repro.perf`` entry
    point, filtered by ``only`` before importing. A package whose hook fails to import is
    reported with its error instead of stopping the suite (the workspace grows package by
    package; one broken package must not hide the others' numbers)."""
    eps = list(entry_points(group="repro.perf"))
    known = ["core", "loss", "prepare"] + sorted(ep.name for ep in eps)
    if only and (unknown := only - set(known)):  # before importing anything heavy
        raise UserError(f"unknown case group(s) {sorted(unknown)}; registered: {known}")
    found: list[tuple[str, Callable | None, str | None]] = []
    if not only or "core" in only:
        found.append(("core", core_cases, None))
    from repro_benchmarks.perf_scale import loss_cases, prepare_cases

    for name, make in (("loss", loss_cases), ("prepare", prepare_cases)):
        if not only or name in only:
            found.append((name, make, None))
    for ep in eps:
        if only and ep.name not in only:
            continue
        try:
            found.append((ep.name, ep.load(), None))
        except Exception as exc:  # noqa: BLE001 - reported in perf.md / perf.json
            found.append(
                (ep.name, None, f"{ep.value} failed to import: {type(exc).__name__}: {exc}")
            )
    return found


def cpu_name() -> str:
    """The CPU model (the suite times everything on the CPU, even where a GPU is present)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def to_markdown(report: dict) -> str:
    lines = [
        f"# Performance ({report['date']})",
        "",
        f"Hardware: {report['hardware']}. Measured fp32 matmul peak: {report['peak_gflops']:.1f} GFLOP/s "
        f"({report['threads']} threads). Each case alternates candidate and baseline {report['repeats']} times "
        "in one process; rates are medians, the ratio range is min..max over repeats.",
        "",
        "| case | candidate | baseline | candidate rate | baseline rate | ratio (median, range) "
        "| achieved GFLOP/s, fraction of peak (cand / base) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["cases"]:
        frac = (
            f"{r['candidate_gflops']:.1f} ({r['candidate_peak_fraction']:.1%}) / "
            f"{r['baseline_gflops']:.1f} ({r['baseline_peak_fraction']:.1%})"
            if "candidate_peak_fraction" in r
            else ""
        )
        lines.append(
            f"| {r['name']} | {r['candidate']} | {r['baseline']} | {r['candidate_median']:,.0f} {r['unit']} | "
            f"{r['baseline_median']:,.0f} {r['unit']} | **{r['ratio_median']:.2f}x** "
            f"({r['ratio_min']:.2f}..{r['ratio_max']:.2f}) | {frac} |"
        )
    lines.append("")
    for r in report["cases"]:
        if r.get("extra"):
            lines.append(f"- {r['name']}: {json.dumps(r['extra'], sort_keys=True)}")
    if any(r.get("extra") for r in report["cases"]):
        lines.append("")
    if report.get("failed"):
        lines.append("Case groups that could not run (fix the package, then rerun):")
        lines.append("")
        lines += [f"- {f['group']}: {f['error']}" for f in report["failed"]]
        lines.append("")
    lines.append(f"Command: `{report['command']}`")
    return "\n".join(lines) + "\n"


README_START = "<!-- perf:start (generated by `make perf` from benchmarks/results/perf.json) -->"
README_END = "<!-- perf:end -->"


def group_markdown(report: dict, group: str) -> str:
    """The cases of one group of a ``perf.json`` report, as a package README block."""
    cases = [c for c in report["cases"] if c.get("group") == group]
    lines = [
        f"Measured by `{report['command']}` on {report['date']}: {report['hardware']}, "
        f"{report['threads']} threads, candidate and baseline alternated {report['repeats']} times "
        "in one process; rates are medians, the ratio range is min..max over the repeats "
        "(all cases: `benchmarks/results/perf.md`).",
        "",
        "| case | candidate | baseline | candidate rate | baseline rate | ratio (median, range) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        lines.append(
            f"| {c['name']} | {c['candidate']} | {c['baseline']} | "
            f"{c['candidate_median']:,.0f} {c['unit']} | {c['baseline_median']:,.0f} {c['unit']} | "
            f"**{c['ratio_median']:.2f}x** ({c['ratio_min']:.2f}..{c['ratio_max']:.2f}) |"
        )
    if not cases:
        lines.append(f"| (no case of group {group} in this run) | | | | | |")
    return "\n".join(lines)


def package_readme(group: str) -> Path | None:
    """The README.md of the package that registered perf group ``group`` (a ``src/`` layout
    checkout: ``packages/<slug>/src/repro_<slug>/`` -> ``packages/<slug>/README.md``), or None."""
    import importlib.util

    for ep in entry_points(group="repro.perf"):
        if ep.name != group:
            continue
        spec = importlib.util.find_spec(ep.module.split(".")[0])
        if spec is None or spec.origin is None:
            return None
        readme = Path(spec.origin).resolve().parents[2] / "README.md"
        return readme if readme.is_file() else None
    return None


def update_package_readmes(report: dict, readme_of: Callable[[str], Path | None] = package_readme):
    """Rewrite the generated perf block of every package README of the report's groups; returns
    the READMEs changed (a README without the markers is left alone)."""
    changed = []
    for group in dict.fromkeys(c["group"] for c in report["cases"]):
        readme = readme_of(group)
        body = "\n" + group_markdown(report, group) + "\n"
        if readme is not None and replace_block(readme, README_START, README_END, body):
            changed.append(readme)
    return changed


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-perf", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--only", default=None, help="comma-separated case groups (core, finedeep, ...)")
    p.add_argument("--quick", action="store_true", help="tiny shapes, for the smoke test")
    p.add_argument(
        "--readmes-only",
        action="store_true",
        help="only rebuild the package README blocks from the existing perf.json (no timing)",
    )
    p.add_argument(
        "--out", default=None, help="folder for perf.md and perf.json (default: benchmarks/results)"
    )
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else results_dir()
    if args.readmes_only:
        if not (out / "perf.json").is_file():
            print(
                f"repro-perf: error: no {out / 'perf.json'}; run `make perf` first", file=sys.stderr
            )
            return 2
        for readme in update_package_readmes(json.loads((out / "perf.json").read_text())):
            print(f"[perf] rebuilt the speed block of {readme}")
        return 0
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats}: need at least 1")
    only = set(args.only.split(",")) if args.only else None
    groups = registered_cases(only)  # an unknown --only group fails here, before torch
    import torch

    peak = matmul_peak_gflops(512 if args.quick else 2048)
    report = {
        "date": date.today().isoformat(),
        "hardware": f"{cpu_name()} ({platform.machine()}, {os.cpu_count()} cores; all cases run on the CPU)",
        "threads": torch.get_num_threads(),
        "peak_gflops": peak,
        "repeats": args.repeats,
        "command": " ".join(["repro-perf", *(argv if argv is not None else sys.argv[1:])]),
        "cases": [],
    }
    report["failed"] = []
    for group, make_cases, error in groups:
        try:
            cases = make_cases(args.quick) if error is None else []
        except Exception as exc:  # noqa: BLE001 - reported in perf.md / perf.json
            error = f"perf_cases(quick={args.quick}) raised {type(exc).__name__}: {exc}"
        if error is not None:
            report["failed"].append({"group": group, "error": error})
            print(f"[perf] {group}: SKIPPED, {error}", file=sys.stderr, flush=True)
            continue
        for case in cases:
            try:
                result = run_case(case, args.repeats, peak)
            except Exception as exc:  # noqa: BLE001 - reported in perf.md / perf.json
                error = f"case {case.get('name')!r} raised {type(exc).__name__}: {exc}"
                report["failed"].append({"group": group, "error": error})
                print(f"[perf] {group}: SKIPPED, {error}", file=sys.stderr, flush=True)
                continue
            result["group"] = group
            report["cases"].append(result)
            print(
                f"[perf] {group}: {result['name']}: {result['candidate']} {result['candidate_median']:,.0f} "
                f"vs {result['baseline']} {result['baseline_median']:,.0f} {result['unit']} "
                f"-> {result['ratio_median']:.2f}x",
                flush=True,
            )
    write_text_atomic(out / "perf.json", json.dumps(report, indent=1))
    write_text_atomic(out / "perf.md", to_markdown(report))
    print(f"[perf] wrote {out / 'perf.md'}")
    if args.out is None and not args.quick:  # the committed results: READMEs follow them
        for readme in update_package_readmes(report):
            print(f"[perf] rebuilt the speed block of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
