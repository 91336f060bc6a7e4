"""``make gpu-check``: a few bf16 training steps of every package's debug preset on every visible
GPU, with DDP and with DeepSpeed ZeRO-2, then tokens/s and model FLOPs utilisation as a table.

For the core and each package (its ``repro-<slug>-train`` entry point) and each of the two
launch modes, this runs ``accelerate launch --num_processes <GPUs>`` of the debug preset with
``train.max_steps`` steps in a temporary run directory, reads the run's ``results.json``
(median tokens/s over log windows, training FLOPs per token) and writes
``benchmarks/results/gpu-check.md``::

    MFU = tokens/s * training FLOPs per token / (GPUs * peak bf16 FLOP/s of one GPU)

The peak comes from a small table of datasheet numbers (dense bf16, no sparsity) or
``--peak-tflops``. Debug models are tiny, so the MFU is low by construction: this checks that
every model trains under both launchers on the GPUs at hand, not how fast a real model runs.
It runs unchanged on one GPU; without a GPU it stops with one line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ACCEL = ROOT / "shared" / "configs" / "accelerate"
MODES = {"ddp": "multi-gpu.yaml", "zero2": "deepspeed-zero2.yaml"}
# dense bf16 TFLOP/s per GPU (datasheets, without sparsity)
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
}


def entry_points() -> dict[str, str]:
    """{name: "module:function"} of the core trainer and every package's trainer."""
    out = {"core": "repro_core.train:main"}
    for folder in sorted((ROOT / "packages").iterdir()):
        module = f"repro_{folder.name}.train"
        if (folder / "src" / f"repro_{folder.name}" / "train.py").is_file():
            out[folder.name] = f"{module}:main"
    return out


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def run_case(target: str, mode: str, gpus: int, steps: int, run_dir: Path, log: Path) -> dict:
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCEL / MODES[mode]),
        "--num_processes", str(gpus),
        "--main_process_port", str(29500 + os.getpid() % 1000),
        "-m", "repro_benchmarks.gpu_check", "--worker", target, "--",
        "--preset", "debug", "--run-dir", str(run_dir),
        "--set", f"train.max_steps={steps}", "--set", "train.mixed_precision=bf16",
        "--set", "train.eval_every=0", "--set", "train.log_every=2",
        "--set", "train.progress=false", "--set", "train.warmup_steps=1",
    ]  # fmt: skip
    start = time.time()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=1800)
    results = run_dir / "results.json"
    if proc.returncode != 0 or not results.is_file():
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        return {"ok": False, "error": tail[0][:160], "seconds": time.time() - start}
    res = json.loads(results.read_text())
    return {
        "ok": True,
        "tokens_per_second": res.get("tokens_per_second"),
        "flops_per_token": res["flops_per_token"]["train"],
        "loss": res.get("val_loss"),
        "seconds": time.time() - start,
    }


def worker(target: str, argv: list[str]) -> int:
    module, _, func = target.partition(":")
    return int(getattr(importlib.import_module(module), func)(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        rest = argv[2:]
        return worker(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--only", default=None, help="comma-separated: core and/or package slugs")
    p.add_argument("--modes", default="ddp,zero2")
    p.add_argument("--peak-tflops", type=float, default=None, help="per GPU, dense bf16")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu-check.md"))
    args = p.parse_args(argv)

    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:
        print(
            "gpu-check: no CUDA GPU is visible (torch.cuda.device_count() == 0); run it on a GPU machine"
        )
        return 2
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_tflops(name)
    targets = entry_points()
    if args.only:
        targets = {k: v for k, v in targets.items() if k in args.only.split(",")}
    modes = args.modes.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for slug, target in targets.items():
            for mode in modes:
                run_dir = Path(tmp) / f"{slug}-{mode}"
                res = run_case(
                    target, mode, gpus, args.steps, run_dir, Path(tmp) / f"{slug}-{mode}.log"
                )
                if res["ok"] and res["tokens_per_second"] and peak:
                    res["mfu"] = (
                        res["tokens_per_second"] * res["flops_per_token"] / (gpus * peak * 1e12)
                    )
                rows.append((slug, mode, res))
                status = "ok" if res["ok"] else f"FAILED: {res['error']}"
                print(f"[gpu-check] {slug} {mode}: {status}", flush=True)
    lines = [
        f"# GPU check: debug presets, bf16, {gpus} x {name}",
        "",
        f"`make gpu-check` ({args.steps} steps; peak {peak or 'unknown'} TFLOP/s per GPU). Debug "
        "models are tiny: the MFU column shows the launch works, not a real model's speed.",
        "",
        "| model | launch | status | tokens/s | train FLOPs/token | MFU |",
        "|---|---|---|---:|---:|---:|",
    ]
    for slug, mode, res in rows:
        if res["ok"]:
            tps = res["tokens_per_second"] or 0.0
            mfu = f"{100 * res['mfu']:.3f}%" if "mfu" in res else "n/a"
            lines.append(
                f"| {slug} | {mode} | ok | {tps:,.0f} | {res['flops_per_token']:.3g} | {mfu} |"
            )
        else:
            lines.append(f"| {slug} | {mode} | failed: {res['error']} | | | |")
    from repro_core.results import write_text_atomic

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["ok"] for _, _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
