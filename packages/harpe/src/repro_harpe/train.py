"""``repro-harpe-train``: base pretraining and long-context continued training of one arm.

    repro-harpe-train --preset base-tiny --run-dir runs/harpe/tiny/base        # base, length 128
    repro-harpe-train --preset tiny --set model.rope_scheme=uniform            # HARPE, length 1024
    repro-harpe-train --preset tiny --set model.rope_theta=5e6                 # ABF single stage
    repro-harpe-train --preset tiny --set 'model.stages=["1e6:256","2e6:512"]' # ABF, 3 stages
    repro-harpe-train --preset tiny --set model.rope_theta=1e4 --set model.rope_scaling=yarn \\
        --set model.scaling_factor=8                                           # YaRN
    repro-harpe-train --preset tiny --set model.init_from=/models/llama-2-7b   # your checkpoint
    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml -m repro_harpe.train --preset small
    repro-harpe-train --preset tiny --run-dir runs/h --resume                  # continue a run

Data: ``data.corpus=harpe-synthetic`` is the package's generator (prose + retrieval tasks, one
document per block, :mod:`repro_harpe.corpus`), ``train.max_steps * batch_size * grad_accum``
blocks of ``data.seq_len``; any other corpus is packed by the core as usual. Every arm sees the
same number of tokens: a multi-stage run splits ``train.max_steps`` over its stages by
``model.stage_fractions`` and scales the batch by ``seq_len / stage_len`` so each step holds the
same number of tokens; each stage starts a fresh optimizer and schedule (separate runs, as
multi-stage ABF is done in practice), stage k in ``<run-dir>/stage<k>``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from repro_core.config import load_config, package_preset_dirs, resolve_base
from repro_core.data import BlockSampler, get_tokenizer
from repro_core.results import write_text_atomic
from repro_core.train import Trainer, build_arg_parser, list_checkpoints, reset_accelerate

from .config import HarpeModelConfig
from .corpus import data_root, harpe_tokenizer, training_blocks

SYNTHETIC = "harpe-synthetic"
VAL_BLOCKS = 32


class BlockTrainer(Trainer):
    """The core Trainer on given (N, L) token blocks instead of a packed corpus (one document
    per block, so no retrieval instance is cut in two)."""

    def __init__(self, cfg, run_dir, train_blocks, val_blocks, **kwargs):
        super().__init__(cfg, run_dir, **kwargs)
        self.train_blocks, self.val_blocks = train_blocks, val_blocks
        t = cfg.train
        self.sampler = BlockSampler(
            len(train_blocks), t.batch_size, t.grad_accum, self.accelerator.num_processes, cfg.seed
        )


def corpus_folder(tokenizer, train: np.ndarray, val: np.ndarray, seq_len: int) -> str:
    """Write the blocks as text (``train.jsonl`` / ``valid.jsonl``, one block per record) so the
    run's ``data.corpus`` names real files of what it trained on; returns the folder."""
    import hashlib

    digest = hashlib.sha256(train.tobytes() + val.tobytes()).hexdigest()[:12]
    folder = data_root() / f"corpus-{seq_len}-{len(train)}-{digest}"
    if not (folder / "valid.jsonl").is_file():
        for name, blocks in (("train.jsonl", train), ("valid.jsonl", val)):
            text = "".join(
                json.dumps({"text": tokenizer.decode(b.tolist())}) + "\n" for b in blocks
            )
            write_text_atomic(folder / name, text)
    return str(folder)


def run_tokenizer(cfg):
    if cfg.model.init_from:
        return get_tokenizer(resolve_base(cfg.model.init_from))
    if cfg.data.corpus == SYNTHETIC:
        return harpe_tokenizer(cfg.data.tokenizer)
    from repro_core.data import resolve_corpus

    return get_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))


def train_stage(cfg, run_dir: Path, tokenizer, model, resume: bool) -> dict:
    """One Trainer run of ``cfg`` (its ``data.seq_len``) on ``model``."""
    if cfg.data.corpus != SYNTHETIC:
        return Trainer(cfg, run_dir, model=model, tokenizer=tokenizer).train(resume=resume)
    L, t = cfg.data.seq_len, cfg.train
    n = t.max_steps * t.batch_size * t.grad_accum
    if cfg.data.max_train_tokens:
        n = min(n, max(cfg.data.max_train_tokens // L, t.batch_size * t.grad_accum))
    train = training_blocks(tokenizer, L, n, seed=1000 + L)
    val = training_blocks(tokenizer, L, VAL_BLOCKS, seed=2000 + L)
    corpus = corpus_folder(tokenizer, train, val, L)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, corpus=corpus))
    trainer = BlockTrainer(cfg, run_dir, train, val, model=model, tokenizer=tokenizer)
    return trainer.train(resume=resume)


def run(cfg, run_dir: Path, resume: bool = False) -> dict:
    """Train one arm (all its stages); returns the final stage's results."""
    from accelerate.utils import set_seed

    from .modeling import HarpeForCausalLM, set_rope

    run_dir = Path(run_dir)
    tokenizer = run_tokenizer(cfg)
    m, t = cfg.model, cfg.train
    plan = m.stage_plan(cfg.data.seq_len)
    set_seed(cfg.seed)
    model = m.build(len(tokenizer), plan[0][1])
    steps_left = t.max_steps
    for k, (base, stage_len, share) in enumerate(plan):
        final = k == len(plan) - 1
        steps = steps_left if final else max(1, round(share * t.max_steps))
        steps_left -= steps
        stage_dir = run_dir if final else run_dir / f"stage{k}"
        if not final and resume and (stage_dir / "results.json").is_file():
            model = HarpeForCausalLM.from_pretrained(stage_dir / "final")
            continue
        c = model.config
        set_rope(
            model,
            **m.rope_fields(
                c.num_attention_heads, c.num_key_value_heads, c.head_dim, stage_len, base
            ),
        )
        # equal tokens per step in every stage: batch x (seq_len / stage_len)
        batch = max(1, t.batch_size * cfg.data.seq_len // stage_len)
        stage_cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, seq_len=stage_len),
            train=dataclasses.replace(
                t,
                max_steps=steps,
                batch_size=batch,
                warmup_steps=min(t.warmup_steps, steps),
                eval_every=t.eval_every if final else 0,
            ),
            name=cfg.name if final else f"{cfg.name}-stage{k}",
        )
        results = train_stage(stage_cfg, stage_dir, tokenizer, model.train(), resume and final)
        if not final:
            reset_accelerate()
            model = HarpeForCausalLM.from_pretrained(stage_dir / "final")
    return results


def ensure_base_of(cfg, preset: str) -> None:
    """When ``model.init_from`` is a missing ``.../final`` and the preset has a base preset
    (``base-<preset>``), train that base there first (what ``reproduce.py`` does for a grid)."""
    from repro_core.config import ConfigError, find_preset

    init = cfg.model.init_from
    if not init or init.startswith("$") or (Path(init) / "config.json").is_file():
        return
    try:
        base_preset = find_preset(f"base-{Path(preset).stem}", package_preset_dirs(__file__))
    except ConfigError:
        return  # not ours to make: the core raises a clear error for a missing checkpoint
    if Path(init).name != "final":
        return
    print(f"[harpe] {init} is missing: training it with preset {base_preset.stem}")
    base = load_config(
        base_preset, [f"seed={cfg.seed}"], HarpeModelConfig, package_preset_dirs(__file__)
    )
    run(base, Path(init).parent)
    reset_accelerate()


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser("repro-harpe-train", __doc__.split("\n\n")[0]).parse_args(argv)
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(args.preset, overrides, HarpeModelConfig, package_preset_dirs(__file__))
    if args.print_config:
        print(cfg.to_yaml())
        return 0
    run_dir = Path(args.run_dir or f"runs/{cfg.name}-{Path(args.preset).stem}-seed{cfg.seed}")
    if not args.resume and list_checkpoints(run_dir):
        print(
            f"{run_dir} already holds checkpoints: pass --resume to continue it or choose another --run-dir",
            file=sys.stderr,
        )
        return 2
    if not args.resume:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    ensure_base_of(cfg, args.preset)
    results = run(cfg, run_dir, resume=args.resume)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(
            f"[done] val loss {results['val_loss']:.4f} | val ppl {results['val_perplexity']:.2f} | run dir {run_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
