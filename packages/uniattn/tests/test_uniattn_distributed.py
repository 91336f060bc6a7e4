"""UniAttn's two-stage post-training under DDP (2 CPU processes, gloo), launched as documented.

Two processes with batch b equal one process with batch b and 2 accumulation steps: the W_c
least-squares fit runs in every rank on the same calibration blocks, stage 1 trains W_c only,
stage 2 everything; losses and final weights must agree.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.dist

BIN = Path(sys.executable).parent
ACCEL = Path(__file__).resolve().parents[3] / "shared" / "configs" / "accelerate"


def run(cmd, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["lm_loss"] for r in rows if "lm_loss" in r]


def test_two_stage_uniattn_ddp_equals_one_process_with_accumulation(tmp_path):
    base = tmp_path / "base"
    run([BIN / "repro-train", "--preset", "debug", "--run-dir", base, "--set", "train.max_steps=4"])
    settings = [
        "--preset",
        "debug",
        "--set",
        f"model.init_from={base / 'final'}",
        "--set",
        "model.compensation_init=lsq_tokens",
        "--set",
        "model.calibration_blocks=4",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.max_steps=4",
        "--set",
        "train.log_every=1",
        "--set",
        "train.eval_every=0",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    run([BIN / "repro-uniattn-train", *settings, "--set", "train.grad_accum=2", "--run-dir", one])
    launch = [BIN / "accelerate", "launch", "--config_file", ACCEL / "cpu-ddp.yaml"]
    out = run(
        [
            *launch,
            "--main_process_port",
            free_port(),
            "-m",
            "repro_uniattn.train",
            *settings,
            "--set",
            "train.grad_accum=1",
            "--run-dir",
            two,
        ]
    )
    assert out.stdout.count("[done]") == 1  # printed by the main process only
    assert json.loads((two / "meta.json").read_text())["world_size"] == 2
    for stage in ("stage1", "."):
        a, b = losses(one / stage), losses(two / stage)
        assert len(a) == len(b) == 4
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (stage, a, b)
    ref, got = (load_file(d / "final" / "model.safetensors") for d in (one, two))
    assert sorted(ref) == sorted(got) and any("compensation" in k for k in ref)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], atol=1e-5, rtol=0)
