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
import time
from pathlib import Path

import numpy as np
from repro_core.cli import cli_main, done_line, is_main_process, parse_train_command
from repro_core.config import ConfigError, load_config, package_preset_dirs, resolve_base
from repro_core.data import get_tokenizer, resolve_corpus
from repro_core.results import write_text_atomic

from .config import HarpeModelConfig
from .corpus import data_root, harpe_tokenizer, training_blocks

SYNTHETIC = "harpe-synthetic"
VAL_BLOCKS = 32


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
    return get_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))


def stage_blocks(cfg, tokenizer, copy_steps: int = 0) -> tuple[np.ndarray, int]:
    """Training blocks of one synthetic-corpus stage and how many of them open it: ``copy_steps``
    steps' worth of copy-only blocks (capped to leave one step of corpus), then
    ``train.max_steps`` (or ``data.max_train_tokens``) worth of corpus blocks holding a share
    ``model.copy_fraction`` of copy blocks, the total unchanged."""
    L, t, m = cfg.data.seq_len, cfg.train, cfg.model
    G = t.batch_size * t.grad_accum
    copy = dict(copy_period=tuple(m.copy_period))
    n = t.max_steps * G
    if cfg.data.max_train_tokens:
        n = min(n, max(cfg.data.max_train_tokens // L, G))
    train = training_blocks(tokenizer, L, n, seed=1000 + L, copy_fraction=m.copy_fraction, **copy)
    first = min(copy_steps, t.max_steps - 1) * G
    if not first:
        return train, 0
    head = training_blocks(tokenizer, L, first, seed=3000 + L, copy_fraction=1.0, **copy)
    return np.concatenate([head, train[: max(G, n - first)]]), first


def train_stage(
    cfg, run_dir: Path, tokenizer, model, resume: bool, overwrite: bool = False, copy_steps=0
) -> dict:
    """One Trainer run of ``cfg`` (its ``data.seq_len``) on ``model``; its first ``copy_steps``
    steps on copy blocks only (synthetic corpus)."""
    from repro_core.train import Trainer

    from .block_trainer import BlockTrainer

    kwargs = dict(model=model, tokenizer=tokenizer, resume=resume, overwrite=overwrite)
    if cfg.data.corpus != SYNTHETIC:
        return Trainer(cfg, run_dir, **kwargs).train(resume=resume)
    L, G = cfg.data.seq_len, cfg.train.batch_size * cfg.train.grad_accum
    train, first = stage_blocks(cfg, tokenizer, copy_steps)
    val = training_blocks(tokenizer, L, VAL_BLOCKS, seed=2000 + L)
    corpus = corpus_folder(tokenizer, train, val, L)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, corpus=corpus))
    trainer = BlockTrainer(
        cfg, run_dir, train, val, first_blocks=first, first_steps=first // G, **kwargs
    )
    return trainer.train(resume=resume)


def run(cfg, run_dir: Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Train one arm (all its stages); returns the final stage's results.

    ``resume`` continues the final stage (finished earlier stages are skipped); ``overwrite``
    replaces the runs in ``run_dir`` and its stage folders."""
    from accelerate.utils import set_seed
    from repro_core.train import reset_accelerate

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
        results = train_stage(
            stage_cfg,
            stage_dir,
            tokenizer,
            model.train(),
            resume and final,
            overwrite,
            copy_steps=m.copy_steps if k == 0 else 0,  # the curriculum opens the first stage
        )
        if not final:
            reset_accelerate()
            model = HarpeForCausalLM.from_pretrained(stage_dir / "final")
    return results


def base_preset_of(cfg, preset: str) -> Path | None:
    """The base preset (``base-<preset>``) that trains a missing ``model.init_from=.../final``,
    or None (no init_from, it exists, it is ``$REPRO_BASE``, or the preset has no base preset)."""
    from repro_core.config import ConfigError, find_preset

    init = cfg.model.init_from
    if not init or init.startswith("$") or (Path(init) / "config.json").is_file():
        return None
    if Path(init).name != "final":
        return None
    try:
        return find_preset(f"base-{Path(preset).stem}", package_preset_dirs(__file__))
    except ConfigError:
        return None  # not ours to make: check_inputs reports the missing checkpoint


def ensure_base_of(cfg, preset: str) -> None:
    """When ``model.init_from`` is a missing ``.../final`` and the preset has a base preset
    (``base-<preset>``), train that base there first (what ``reproduce.py`` does for a grid)."""
    base_preset = base_preset_of(cfg, preset)
    if base_preset is None:
        return
    from repro_core.train import reset_accelerate

    init = cfg.model.init_from
    print(f"[harpe] {init} is missing: training it with preset {base_preset.stem}")
    base = load_config(
        base_preset, [f"seed={cfg.seed}"], HarpeModelConfig, package_preset_dirs(__file__)
    )
    run(base, Path(init).parent)
    reset_accelerate()


def check_inputs(cfg, preset: str) -> None:
    """Before torch: the base checkpoint exists (or a base preset will train it) and the corpus
    resolves (unless it is the package's synthetic generator)."""
    if cfg.model.init_from and base_preset_of(cfg, preset) is None:
        resolve_base(cfg.model.init_from)
    if cfg.data.corpus != SYNTHETIC:
        resolve_corpus(cfg.data.corpus)
        if cfg.model.copy_steps or cfg.model.copy_fraction:
            raise ConfigError(
                f"model.copy_steps / model.copy_fraction mix copy blocks into the synthetic corpus "
                f"only, not data.corpus={cfg.data.corpus!r}: set them to 0"
            )
    if cfg.model.copy_steps >= cfg.train.max_steps:
        raise ConfigError(
            f"model.copy_steps={cfg.model.copy_steps} leaves no step of the corpus in "
            f"train.max_steps={cfg.train.max_steps}: make it smaller than train.max_steps"
        )


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Parse and check (no torch), train a missing base if the preset has one, then the arm."""
    start = time.perf_counter()
    cmd = parse_train_command(
        argv,
        HarpeModelConfig,
        package_preset_dirs(__file__),
        "repro-harpe-train",
        __doc__.split("\n\n")[0],
        validate=None,  # check_inputs below needs the preset name
    )
    if cmd is None:
        return 0
    check_inputs(cmd.cfg, cmd.args.preset)
    ensure_base_of(cmd.cfg, cmd.args.preset)
    results = run(cmd.cfg, cmd.run_dir, resume=cmd.args.resume, overwrite=cmd.args.overwrite)
    if is_main_process() and results:
        print(done_line(results, cmd.run_dir, time.perf_counter() - start), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
