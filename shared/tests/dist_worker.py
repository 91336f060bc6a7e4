"""Worker launched by test_distributed.py under torchrun / accelerate launch.

Usage: dist_worker.py RUN_DIR [--resume] [--stop-at N] [KEY=VALUE ...]
Trains the debug preset with the overrides, then writes ``rank<r>.safetensors`` (this rank's
parameters) and ``rank<r>.json`` (what torch.distributed reports) into RUN_DIR.
"""

import json
import os
import sys
from pathlib import Path

import repro_core.train as core_train
import torch.distributed as dist
from repro_core.config import load_config, package_preset_dirs
from safetensors.torch import save_file


class StopAt:
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step):
        if step == self.step:
            trainer.accelerator.wait_for_everyone()
            sys.exit(0)


def main():
    run_dir = Path(sys.argv[1])
    args = sys.argv[2:]
    resume = "--resume" in args
    stop = None
    if "--stop-at" in args:
        stop = int(args[args.index("--stop-at") + 1])
    overrides = ["train.progress=false"] + [a for a in args if "=" in a]
    cfg = load_config("debug", overrides, preset_dirs=package_preset_dirs(core_train.__file__))
    trainer = core_train.Trainer(
        cfg, run_dir, callbacks=[StopAt(stop)] if stop else [], resume=resume
    )
    trainer.train()
    rank = trainer.accelerator.process_index
    info = {
        "accelerate_processes": trainer.accelerator.num_processes,
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "rank": dist.get_rank() if dist.is_initialized() else 0,
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "env_world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    (run_dir / f"rank{rank}.json").write_text(json.dumps(info))
    state = trainer.accelerator.get_state_dict(trainer.model)
    if state is not None:
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in state.items()},
            run_dir / f"rank{rank}.safetensors",
        )
    else:  # not every rank gets a state dict under ZeRO-3
        pass


if __name__ == "__main__":
    main()
