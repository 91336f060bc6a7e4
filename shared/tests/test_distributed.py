"""Multi-process training on CPU (gloo): DDP equivalence and DeepSpeed ZeRO-2 save/resume.

Each case is a subprocess (torchrun / accelerate launch) with its own port and a timeout.
Ranks are checked through torch.distributed, since accelerate has been seen to report one
process under DeepSpeed on CPU.
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

HERE = Path(__file__).resolve().parent
WORKER = HERE / "dist_worker.py"
ACCEL = HERE.parent / "configs" / "accelerate"
BIN = Path(sys.executable).parent
COMMON = [
    "train.max_steps=6",
    "train.eval_every=0",
    "train.batch_size=4",
    "train.log_every=1",
    "train.warmup_steps=1",
]

pytestmark = pytest.mark.dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env_extra=None, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc


def losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["lm_loss"] for r in lines if "lm_loss" in r]


def test_two_process_ddp_equals_one_process_with_doubled_accumulation(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, WORKER, one, *COMMON, "train.grad_accum=2"])
    # the documented launch: accelerate with the cpu-ddp config, no environment variables
    launch = [BIN / "accelerate", "launch", "--config_file", ACCEL / "cpu-ddp.yaml"]
    run(
        [
            *launch,
            "--main_process_port",
            str(free_port()),
            WORKER,
            two,
            *COMMON,
            "train.grad_accum=1",
        ]
    )
    for rank in (0, 1):
        info = json.loads((two / f"rank{rank}.json").read_text())
        assert info == {
            "accelerate_processes": 2,
            "world_size": 2,
            "rank": rank,
            "backend": "gloo",
            "env_world_size": 2,
        }
    assert json.loads((two / "meta.json").read_text())["world_size"] == 2
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    ref = load_file(one / "rank0.safetensors")
    r0, r1 = load_file(two / "rank0.safetensors"), load_file(two / "rank1.safetensors")
    for key in ref:
        assert torch.equal(r0[key], r1[key]), f"ranks disagree on {key}"
        torch.testing.assert_close(r0[key], ref[key], atol=1e-5, rtol=0)


def test_deepspeed_zero2_two_processes_trains_saves_and_resumes(tmp_path):
    launch = [
        BIN / "accelerate",
        "launch",
        "--config_file",
        ACCEL / "deepspeed-zero2.yaml",
        "--num_processes",
        "2",
    ]
    settings = [*COMMON, "train.save_every=2", "train.keep_checkpoints=3"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run([*launch, "--main_process_port", str(free_port()), WORKER, full, *settings])
    for rank in (0, 1):
        info = json.loads((full / f"rank{rank}.json").read_text())
        assert (info["world_size"], info["rank"], info["accelerate_processes"]) == (2, rank, 2)
    assert len(losses(full)) == 6 and losses(full)[-1] < losses(full)[0]

    run(
        [*launch, "--main_process_port", str(free_port()), WORKER, cut, *settings, "--stop-at", "3"]
    )
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["step-0000002"]
    run([*launch, "--main_process_port", str(free_port()), WORKER, cut, *settings, "--resume"])
    assert (cut / "final" / "model.safetensors").is_file()
    ref, resumed = load_file(full / "rank0.safetensors"), load_file(cut / "rank0.safetensors")
    for key in ref:
        torch.testing.assert_close(resumed[key], ref[key], atol=1e-6, rtol=0)


@pytest.mark.timeout(2400)
def test_checkpoint_of_two_processes_resumes_on_one_process_with_the_same_global_batch(tmp_path):
    """2 -> 1 process: resuming with grad_accum doubled continues the 2-process run exactly;
    a changed global batch is refused with a message saying what to set."""
    launch = [BIN / "accelerate", "launch", "--config_file", ACCEL / "cpu-ddp.yaml"]
    settings = [*COMMON, "train.save_every=2", "train.keep_checkpoints=3"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    port = ["--main_process_port", str(free_port())]
    run([*launch, *port, WORKER, full, *settings, "train.grad_accum=1"])
    port = ["--main_process_port", str(free_port())]
    run([*launch, *port, WORKER, cut, *settings, "train.grad_accum=1", "--stop-at", "3"])
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["step-0000002"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    refused = subprocess.run(
        [sys.executable, WORKER, cut, *settings, "train.grad_accum=1", "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0 and "global batch of 8 blocks" in refused.stderr
    run([sys.executable, WORKER, cut, *settings, "train.grad_accum=2", "--resume"])
    ref, resumed = load_file(full / "rank0.safetensors"), load_file(cut / "rank0.safetensors")
    for key in ref:
        torch.testing.assert_close(resumed[key], ref[key], atol=1e-5, rtol=0)
