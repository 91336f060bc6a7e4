"""Trainer on Accelerate; ``repro-train`` entry point.

One process (CPU or GPU)::

    repro-train --preset tiny
    repro-train --preset tiny --set train.lr=3e-4 --set model.num_hidden_layers=6

Several processes (DDP, or DeepSpeed ZeRO through an accelerate config file)::

    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml -m repro_core.train --preset small
    accelerate launch --config_file shared/configs/accelerate/deepspeed-zero2.yaml -m repro_core.train --preset small
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m repro_core.train --preset debug   # CPU DDP (gloo)

Resume from the latest complete checkpoint of a run directory::

    repro-train --preset tiny --run-dir runs/tiny-1 --resume

A run directory holds ``config.yaml`` (resolved), ``meta.json`` (git commit, package versions,
world size), ``metrics.jsonl``, ``checkpoints/step-XXXXXXX/`` (written atomically),
``final/`` (HF model + tokenizer), ``results.json`` and, when asked, ``position_loss.npz``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig, RunConfig, package_preset_dirs
from .data import BlockSampler, as_blocks, get_tokenizer, resolve_corpus
from .evaluate import position_losses, summarize
from .modeling import count_parameters, flops_per_token, set_gradient_checkpointing
from .prepare import epochs_over_corpus, prepared_splits
from .results import write_text_atomic
from .rundir import check_run_dir, clear_run

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{7})$")
MANIFEST = "manifest.json"


# ----------------------------------------------------------------------------------------------
# Small pieces


def lr_multiplier(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, biases, gains)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)


def log_spaced_steps(max_steps: int, points: int) -> list[int]:
    """About ``points`` distinct steps in 1..max_steps, evenly spaced in log(step)."""
    if points <= 0:
        return []
    raw = np.unique(np.round(np.geomspace(1, max_steps, points)).astype(int))
    return [int(s) for s in raw]


def run_metadata() -> dict:
    """Git commit, package versions, host and accelerator, for reproducibility."""
    from importlib import metadata

    def git(*args):
        try:
            return (
                subprocess.run(
                    ["git", *args], capture_output=True, text=True, timeout=5
                ).stdout.strip()
                or None
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    versions = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and (
            name.startswith("repro-")
            or name
            in (
                "torch",
                "transformers",
                "accelerate",
                "datasets",
                "tokenizers",
                "deepspeed",
                "numpy",
                "lm_eval",
                "lm-eval",
            )
        ):
            versions[name] = dist.version
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "versions": dict(sorted(versions.items())),
        "python": platform.python_version(),
        "host": platform.node(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
    }


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _manifest(directory: Path) -> dict[str, int]:
    return {
        str(p.relative_to(directory)): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def verify_checkpoint(directory: Path) -> None:
    """Raise ValueError naming the problem if ``directory`` is not a complete checkpoint."""
    manifest_file = directory / MANIFEST
    if not manifest_file.is_file():
        raise ValueError(f"checkpoint {directory} is incomplete: {MANIFEST} is missing")
    expected = json.loads(manifest_file.read_text())
    actual = _manifest(directory)
    for name, size in expected.items():
        if name not in actual:
            raise ValueError(f"checkpoint {directory} is incomplete: {name} is missing")
        if actual[name] != size:
            raise ValueError(
                f"checkpoint {directory} is corrupt: {name} has {actual[name]} bytes, expected {size} "
                "(truncated write?)"
            )


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if CHECKPOINT_PATTERN.match(p.name))


def latest_checkpoint(run_dir: Path, warn: Callable[[str], None] | None = None) -> Path | None:
    """Newest checkpoint of ``run_dir`` that passes :func:`verify_checkpoint`."""
    for ckpt in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(ckpt)
            return ckpt
        except ValueError as exc:
            if warn:
                warn(f"skipping {exc}")
    return None


# ----------------------------------------------------------------------------------------------
# Accelerator


def reset_accelerate() -> None:
    """Forget Accelerate's process-wide state, so that several Trainers can run one after the
    other in one process (a grid run in process, tests)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def make_accelerator(train_cfg):
    """An Accelerator that really sees every process, on GPU or CPU, with or without DeepSpeed.

    Two traps of accelerate on CPU are handled (see the handbook): without ``cpu=True`` each
    torchrun process believes it is alone; under DeepSpeed without CUDA the process group must
    be gloo or accelerate reports one process.
    """
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    use_deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if not use_deepspeed:
        # accelerate imports DeepSpeed (when installed) to unwrap any model it saves: seconds of
        # imports and a "Setting accelerator to CPU" warning for runs that never use it
        import accelerate.utils.other

        accelerate.utils.other.is_deepspeed_available = lambda: False
    has_cuda = torch.cuda.is_available()
    mp = train_cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if has_cuda and torch.cuda.is_bf16_supported() else "no"
    kwargs = {"gradient_accumulation_steps": train_cfg.grad_accum, "mixed_precision": mp}
    if use_deepspeed:
        if not has_cuda:
            kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
        from accelerate.state import AcceleratorState  # noqa: F401
    else:
        kwargs["cpu"] = not has_cuda
    accelerator = Accelerator(**kwargs)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world:
        raise RuntimeError(
            f"accelerate sees {accelerator.num_processes} process(es) but WORLD_SIZE={world}; "
            "on CPU launch with ACCELERATE_USE_CPU=true (or the cpu-ddp accelerate config)"
        )
    if use_deepspeed:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = train_cfg.batch_size
        ds["gradient_accumulation_steps"] = train_cfg.grad_accum
        ds["train_batch_size"] = train_cfg.batch_size * train_cfg.grad_accum * world
        ds["gradient_clipping"] = train_cfg.grad_clip
        ds.setdefault("zero_allow_untested_optimizer", True)
    return accelerator


# ----------------------------------------------------------------------------------------------
# Trainer


class Trainer:
    """Trains ``cfg.model`` on ``cfg.data`` with ``cfg.train``; writes a run directory.

    Args:
        cfg: the resolved run configuration.
        run_dir: output directory (created).
        callbacks: objects with ``on_step_end(trainer, step)`` (called after each optimizer step,
            on every rank) and optionally ``on_train_end(trainer)``.
        model: a prebuilt model (else ``cfg.model.build(...)``).
        tokenizer: a prebuilt tokenizer (else from ``cfg.data.tokenizer`` or the base model).
        resume: ``run_dir`` may hold a run to continue (``train()`` then resumes by default).
        overwrite: ``run_dir`` may hold a run to replace: its run files are deleted first.
            With neither, a ``run_dir`` holding a finished or partial run raises
            :class:`~repro_core.rundir.RunDirExistsError` (see :mod:`repro_core.rundir`).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        callbacks: Sequence = (),
        model=None,
        tokenizer=None,
        resume: bool = False,
        overwrite: bool = False,
    ):
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        check_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
        self.resume = resume
        self.accelerator = make_accelerator(cfg.train)
        set_seed(cfg.seed)
        acc = self.accelerator
        if acc.is_main_process:
            if overwrite:
                clear_run(self.run_dir)
            elif resume and latest_checkpoint(self.run_dir) is None:
                # nothing to continue: the run restarts at step 0, without the old metrics
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()

        corpus = resolve_corpus(cfg.data.corpus)
        if tokenizer is None:
            if cfg.model.init_from:
                from .config import resolve_base

                tokenizer = get_tokenizer(resolve_base(cfg.model.init_from))
            else:
                with acc.local_main_process_first():  # one process per node trains it
                    tokenizer = get_tokenizer(
                        cfg.data.tokenizer, corpus, sample_bytes=cfg.data.tokenizer_sample_bytes
                    )
        self.tokenizer = tokenizer
        # Shards (repro_core.prepare): the first process of each node tokenizes when they are
        # missing, the others wait. Multi-node: run `repro-prepare` first (README).
        with acc.local_main_process_first():
            splits = prepared_splits(
                corpus,
                tokenizer,
                cfg.data.val_fraction,
                cfg.data.prepare_workers,
                log=acc.print if acc.is_local_main_process else lambda *a: None,
            )
        train_tokens = splits["train"].tokens
        if cfg.data.max_train_tokens:
            train_tokens = train_tokens[: cfg.data.max_train_tokens]
        L = cfg.data.seq_len
        self.train_blocks = as_blocks(train_tokens, L)
        self.val_split = splits["validation"]
        self.val_blocks = as_blocks(self.val_split.tokens, L)
        self.sampler = BlockSampler(
            len(self.train_blocks),
            cfg.train.batch_size,
            cfg.train.grad_accum,
            acc.num_processes,
            cfg.seed,
        )

        model = (
            model
            if model is not None
            else cfg.model.build(vocab_size=len(tokenizer), max_position_embeddings=L)
        )
        if cfg.train.gradient_checkpointing and not set_gradient_checkpointing(model, True):
            raise ValueError(
                "train.gradient_checkpointing=true but the model has no DecoderModel to "
                "recompute; set it to false for this model"
            )
        if hasattr(model, "loss_chunk_tokens"):
            model.loss_chunk_tokens = cfg.train.loss_chunk_tokens
        if cfg.train.trainable:
            pattern = re.compile(cfg.train.trainable)
            matched = 0
            for name, p in model.named_parameters():
                p.requires_grad_(bool(pattern.search(name)))
                matched += p.requires_grad
            if not matched:
                raise ValueError(
                    f"train.trainable={cfg.train.trainable!r} matches no parameter name"
                )
        self.params = count_parameters(model)
        self.flops = flops_per_token(model, L)
        optimizer = build_optimizer(model, cfg.train)
        t = cfg.train
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_multiplier(s, t.warmup_steps, t.max_steps, t.min_lr_ratio)
        )
        if cfg.train.compile:
            model = torch.compile(model)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.callbacks = list(callbacks)
        if cfg.train.position_loss_points:
            self.callbacks.append(PositionLossLogger(cfg.train.position_loss_points))
        self.step = 0
        self.tokens_seen = 0
        self.tokens_per_step = self.sampler.global_batch * L
        self.epochs = epochs_over_corpus(
            cfg.train.max_steps * self.tokens_per_step, len(self.train_blocks) * L
        )
        self._metrics_file = self.run_dir / "metrics.jsonl"
        self._wandb = None

    # -- logging ---------------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        """Append one JSON line to metrics.jsonl (main process) and to wandb when enabled."""
        if not self.accelerator.is_main_process:
            return
        with open(self._metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            self._wandb.log(record, step=record.get("step"))

    def print(self, *args) -> None:
        self.accelerator.print(*args)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, max_batches: int | None = None) -> dict:
        """Validation loss / perplexity / bits per byte on the first ``eval_batches`` batches."""
        batches = self.cfg.train.eval_batches if max_batches is None else max_batches
        with self.accelerator.autocast():
            sums, count = position_losses(
                self.model, self.val_blocks, self.cfg.train.batch_size, batches
            )
        return summarize(float(sums.sum() / (count * len(sums))), self.val_split.bytes_per_token)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write checkpoints/step-XXXXXXX atomically (temp dir + manifest + rename)."""
        acc = self.accelerator
        root = self.run_dir / "checkpoints"
        final = root / f"step-{self.step:07d}"
        tmp = root / f".tmp-step-{self.step:07d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        state_dict = acc.get_state_dict(self.model)
        # every rank must have finished writing its shards before the manifest and the rename
        acc.wait_for_everyone()
        if acc.is_main_process:
            acc.unwrap_model(self.model).save_pretrained(tmp / "model", state_dict=state_dict)
            self.tokenizer.save_pretrained(tmp / "model")
            torch.save(self.scheduler.state_dict(), tmp / "lr_scheduler.pt")
            (tmp / "trainer_state.json").write_text(
                json.dumps(
                    {
                        "step": self.step,
                        "tokens_seen": self.tokens_seen,
                        "seed": self.cfg.seed,
                        "world_size": acc.num_processes,
                        "global_batch": self.sampler.global_batch,
                    },
                    indent=1,
                )
            )
            (tmp / "config.yaml").write_text(self.cfg.to_yaml())
            (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp), indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in list_checkpoints(self.run_dir)[: -self.cfg.train.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, ckpt: Path) -> None:
        verify_checkpoint(ckpt)
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if state["world_size"] != self.accelerator.num_processes and _is_deepspeed(
            self.accelerator
        ):
            raise ValueError(
                f"{ckpt} was written by {state['world_size']} DeepSpeed processes, now there are "
                f"{self.accelerator.num_processes}; convert it with deepspeed's ds_to_universal first"
            )
        # The data order is a function of the step and the global batch (BlockSampler): with
        # another world size the run continues exactly when the global batch is unchanged.
        saved_cfg = load_config_text(ckpt / "config.yaml")
        saved_batch = state.get("global_batch") or (
            saved_cfg["train"]["batch_size"]
            * saved_cfg["train"]["grad_accum"]
            * state["world_size"]
        )
        if saved_batch != self.sampler.global_batch:
            t = self.cfg.train
            raise ValueError(
                f"{ckpt} was trained with a global batch of {saved_batch} blocks "
                f"({state['world_size']} process(es)); now it is {self.sampler.global_batch} "
                f"(batch_size {t.batch_size} x grad_accum {t.grad_accum} x "
                f"{self.accelerator.num_processes} process(es)). Set train.grad_accum (or "
                "train.batch_size) so that the product stays the same"
            )
        self.accelerator.load_state(str(ckpt))
        self.scheduler.load_state_dict(torch.load(ckpt / "lr_scheduler.pt", weights_only=True))
        self.step = state["step"]
        self.tokens_seen = state["tokens_seen"]

    # -- the loop --------------------------------------------------------------------------------
    def train(self, resume: bool | None = None) -> dict:
        """Run until ``train.max_steps``; returns the final results (also in results.json).

        ``resume`` (default: as given to the constructor) continues from the latest complete
        checkpoint of the run directory."""
        acc, cfg, t = self.accelerator, self.cfg, self.cfg.train
        resume = self.resume if resume is None else resume
        if resume:
            ckpt = latest_checkpoint(self.run_dir, warn=lambda m: self.print(f"[resume] {m}"))
            if ckpt is None:
                self.print(
                    f"[resume] no complete checkpoint in {self.run_dir}; starting from step 0"
                )
            else:
                self.load_checkpoint(ckpt)
                self.print(f"[resume] continuing from {ckpt.name} (step {self.step})")
        if acc.is_main_process:
            write_text_atomic(self.run_dir / "config.yaml", cfg.to_yaml())
            meta = run_metadata() | {
                "world_size": acc.num_processes,
                "distributed": str(acc.distributed_type),
                "mixed_precision": acc.mixed_precision,
                "seed": cfg.seed,
            }
            write_text_atomic(self.run_dir / "meta.json", json.dumps(meta, indent=1))
            if t.wandb:
                import wandb

                os.environ.setdefault("WANDB_MODE", "offline")
                self._wandb = wandb.init(
                    project=t.wandb_project,
                    name=cfg.name,
                    config=cfg.to_dict(),
                    dir=str(self.run_dir),
                )
        self.print(
            f"[train] {cfg.name}: {self.params['total'] / 1e6:.2f}M params "
            f"({self.params['activated'] / 1e6:.2f}M activated non-embedding), "
            f"{self.tokens_per_step} tokens/step x {t.max_steps} steps, {acc.num_processes} process(es), "
            f"{len(self.train_blocks)} train blocks of {cfg.data.seq_len}, run dir {self.run_dir}"
        )
        self.print(
            f"[train] budget {t.max_steps * self.tokens_per_step:,} tokens = {self.epochs:.2f} "
            f"epoch(s) over the {len(self.train_blocks) * cfg.data.seq_len:,} training tokens of "
            f"{cfg.data.corpus}"
        )
        if self.epochs > 1:
            self.print(
                f"[train] warning: the budget repeats the corpus {self.epochs:.1f} times; a "
                "larger corpus (README: named corpora) avoids training on repeated data"
            )
        from tqdm.auto import tqdm

        # a bar on a terminal; piped output gets one plain line per log_every steps instead
        log_lines = t.progress and acc.is_main_process and not sys.stderr.isatty()
        bar = tqdm(
            total=t.max_steps,
            initial=self.step,
            disable=not (t.progress and acc.is_main_process) or log_lines,
            desc=cfg.name,
            dynamic_ncols=True,
        )
        device = acc.device
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        train_seconds, window_tokens, window_start = 0.0, 0, time.perf_counter()
        # loss terms stay on the device until a log step: no host sync per micro-step
        window_losses: dict[str, torch.Tensor] = {}
        window_count = 0
        self.model.train()
        while self.step < t.max_steps:
            grad_norm = None
            for micro in range(t.grad_accum):
                idx = self.sampler.indices(self.step, micro, acc.process_index)
                x = torch.from_numpy(self.train_blocks[np.sort(idx)].astype(np.int64)).to(device)
                with acc.accumulate(self.model):
                    out = self.model(input_ids=x, labels=x)
                    acc.backward(out.loss)
                    if acc.sync_gradients:
                        if t.grad_clip > 0:
                            grad_norm = acc.clip_grad_norm_(trainable, t.grad_clip)
                        self.optimizer.step()
                        self.scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
                terms = {"loss": out.loss.detach(), "lm_loss": out.lm_loss.detach()}
                terms.update({f"aux/{k}": v.detach() for k, v in (out.aux_losses or {}).items()})
                for k, v in terms.items():
                    v = v.float() / t.grad_accum
                    window_losses[k] = window_losses[k] + v if k in window_losses else v
            window_count += 1
            self.step += 1
            self.tokens_seen += self.tokens_per_step
            window_tokens += self.tokens_per_step
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.max_steps:
                elapsed = time.perf_counter() - window_start
                train_seconds += elapsed
                names = sorted(window_losses)
                stacked = torch.stack([window_losses[k] for k in names]) / window_count
                values = acc.reduce(stacked, "mean").tolist()  # one sync per log step
                rec = dict(zip(names, values))
                rec.update(
                    step=self.step,
                    tokens_seen=self.tokens_seen,
                    lr=self.scheduler.get_last_lr()[0],
                    tokens_per_second=window_tokens / max(elapsed, 1e-9),
                )
                if grad_norm is not None:
                    rec["grad_norm"] = float(grad_norm)
                self.log(rec)
                if log_lines:
                    print(
                        f"[train] step {self.step}/{t.max_steps} | loss {rec['lm_loss']:.4f} | "
                        f"lr {rec['lr']:.2e} | {rec['tokens_per_second']:.0f} tokens/s",
                        flush=True,
                    )
                bar.set_postfix(
                    loss=f"{rec['lm_loss']:.3f}", tok_s=f"{rec['tokens_per_second']:.0f}"
                )
                window_losses, window_count, window_tokens = {}, 0, 0
                window_start = time.perf_counter()
            pause = time.perf_counter()
            if t.eval_every and (self.step % t.eval_every == 0) and self.step != t.max_steps:
                ev = self.evaluate()
                self.log({"step": self.step, **{f"val_{k}": v for k, v in ev.items()}})
            for cb in self.callbacks:
                cb.on_step_end(self, self.step)
            if t.save_every and self.step % t.save_every == 0:
                self.save_checkpoint()
            window_start += time.perf_counter() - pause
        bar.close()
        return self.finish(train_seconds)

    def finish(self, train_seconds: float) -> dict:
        acc, cfg = self.accelerator, self.cfg
        ev = self.evaluate(max_batches=0 if cfg.train.eval_batches == 0 else None)
        self.log({"step": self.step, **{f"val_{k}": v for k, v in ev.items()}})
        for cb in self.callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(self)
        state_dict = acc.get_state_dict(self.model)
        metrics = (
            [json.loads(line) for line in open(self._metrics_file)] if acc.is_main_process else []
        )
        speeds = [m["tokens_per_second"] for m in metrics if "tokens_per_second" in m]
        results = {
            "name": cfg.name,
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            **{f"val_{k}": v for k, v in ev.items()},
            "tokens_per_second": float(np.median(speeds)) if speeds else None,
            "train_seconds": train_seconds,
            "parameters": self.params,
            "flops_per_token": self.flops,
            "world_size": acc.num_processes,
        }
        if acc.is_main_process:
            final = self.run_dir / "final"
            tmp = self.run_dir / ".tmp-final"
            shutil.rmtree(tmp, ignore_errors=True)
            acc.unwrap_model(self.model).save_pretrained(tmp, state_dict=state_dict)
            self.tokenizer.save_pretrained(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_text_atomic(self.run_dir / "results.json", json.dumps(results, indent=1))
            if self._wandb is not None:
                self._wandb.finish()
        acc.wait_for_everyone()
        return results


def load_config_text(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def _is_deepspeed(acc) -> bool:
    return str(acc.distributed_type).endswith("DEEPSPEED")


class PositionLossLogger:
    """Validation loss per token position at log-spaced steps -> ``position_loss.npz``.

    Arrays: ``steps`` (S,), ``tokens_seen`` (S,), ``lr`` (S,), ``loss`` (S, seq_len - 1): the
    loss of predicting token i+1 from tokens 0..i, averaged over the evaluated blocks. The file
    is rewritten atomically after every point, so an interrupted run keeps what it measured.
    """

    def __init__(self, points: int):
        self.points = points
        self.records: list[tuple[int, int, float, np.ndarray]] = []
        self.schedule: set[int] | None = None

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        if self.schedule is None:
            self.schedule = set(log_spaced_steps(trainer.cfg.train.max_steps, self.points))
            self._keep_earlier_points(trainer.run_dir / "position_loss.npz", step)
        if step not in self.schedule:
            return
        with trainer.accelerator.autocast():
            sums, count = position_losses(
                trainer.model,
                trainer.val_blocks,
                trainer.cfg.train.batch_size,
                trainer.cfg.train.eval_batches,
            )
        self.records.append(
            (step, trainer.tokens_seen, trainer.scheduler.get_last_lr()[0], sums / count)
        )
        self._write(trainer)

    def _keep_earlier_points(self, path: Path, step: int) -> None:
        """After ``--resume``, keep the points measured before the checkpoint."""
        if not path.is_file():
            return
        with np.load(path) as old:
            for i, s in enumerate(old["steps"]):
                if s < step:
                    self.records.append(
                        (int(s), int(old["tokens_seen"][i]), float(old["lr"][i]), old["loss"][i])
                    )

    def _write(self, trainer: Trainer) -> None:
        if trainer.accelerator.is_main_process:
            path = trainer.run_dir / "position_loss.npz"
            tmp = trainer.run_dir / ".position_loss.tmp.npz"
            np.savez(
                tmp,
                steps=np.array([r[0] for r in self.records], dtype=np.int64),
                tokens_seen=np.array([r[1] for r in self.records], dtype=np.int64),
                lr=np.array([r[2] for r in self.records], dtype=np.float64),
                loss=np.stack([r[3] for r in self.records]),
            )
            os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Command line (parsing and validation live in repro_core.cli, which needs no torch)


def build_arg_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The trainer's arguments (``--preset --set --run-dir --seed --resume --overwrite``)."""
    from .cli import train_arg_parser

    return train_arg_parser(prog, description)


def main(
    argv: list[str] | None = None,
    model_config_cls: type[ModelConfig] = ModelConfig,
    preset_dirs: list[Path] | None = None,
    prog: str = "repro-train",
) -> int:
    """``python -m repro_core.train`` (accelerate launch); the same as ``repro-train``."""
    from .cli import train_main

    return train_main(argv, model_config_cls, preset_dirs or package_preset_dirs(__file__), prog)


if __name__ == "__main__":
    sys.exit(main())
