"""``repro-uniattn-train``: post-train a Llama checkpoint as UniAttn (or one of its baselines).

    repro-uniattn-train --preset tiny                                    # UniAttn, LS init, 2 stages
    repro-uniattn-train --preset tiny --set model.variant=base           # standard fine-tuning
    repro-uniattn-train --preset tiny --set model.variant=cla            # cross-layer KV sharing
    repro-uniattn-train --preset tiny --set model.init_from=/models/llama --set model.start=16 \\
        --set model.end=33 --set model.group_size=4                      # your own checkpoint
    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml -m repro_uniattn.train --preset small
    repro-uniattn-train --preset tiny --run-dir runs/ua --resume         # continue a run

With ``model.variant=uniattn`` the W_c of each reusing layer is first fitted by sequential least
squares on ``model.calibration_blocks`` training blocks (``model.compensation_init``). With
``model.stage1_steps`` > 0, stage 1 (W_c only) runs in ``<run-dir>/stage1`` and stage 2 (full
fine-tuning, fresh optimizer) in ``<run-dir>``: ``train.max_steps`` steps with
``model.stage1_budget=extra`` (official), ``train.max_steps - stage1_steps`` with ``split`` (the
``tiny`` preset: every arm then takes ``train.max_steps`` optimizer steps in all). The other
variants have no W_c and skip stage 1 (the ``tiny`` preset's ``stage1_steps`` applies to
``uniattn`` only).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from repro_core.cli import train_main
from repro_core.config import package_preset_dirs, resolve_base
from repro_core.data import get_tokenizer, resolve_corpus

from .config import UniAttnModelConfig, is_uniattn_checkpoint
from .task import CORPUS_NAME, resolve_task_corpus


def build_model(cfg, tokenizer, log=print):
    """The arm's model; for ``uniattn`` converted from a base, W_c fitted on calibration data."""
    from accelerate.utils import set_seed

    m = cfg.model
    set_seed(cfg.seed)  # a fresh model (no init_from) is the same for every arm of a seed
    model = m.build(vocab_size=len(tokenizer), max_position_embeddings=cfg.data.seq_len)
    fresh_conversion = (
        m.variant == "uniattn"
        and m.init_from
        and not is_uniattn_checkpoint(resolve_base(m.init_from))
    )
    if fresh_conversion and m.compensation_init != "zero":
        from repro_core.modeling import load_llama_checkpoint

        from .convert import calibration_blocks, fit_compensation

        ids = calibration_blocks(
            tokenizer, cfg.data.corpus, m.calibration_blocks, cfg.data.seq_len, cfg.seed
        )
        base = load_llama_checkpoint(resolve_base(m.init_from))
        report = fit_compensation(model, base, ids, m.compensation_init, m.ridge)
        log(f"[uniattn] W_c init {m.compensation_init}: {json.dumps(report)}")
        model.compensation_report = report
    return model.train()


def run_tokenizer(cfg):
    """The base checkpoint's tokenizer, or (no ``model.init_from``) the data config's."""
    if cfg.model.init_from:
        return get_tokenizer(resolve_base(cfg.model.init_from))
    return get_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))


def run(cfg, run_dir: Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Train one arm (one or two stages); returns the final stage's results.

    ``resume`` / ``overwrite``: what to do with a run already in ``run_dir`` (see
    :class:`repro_core.train.Trainer`); stage 1 reruns from scratch whenever it runs."""
    from repro_core.train import Trainer, reset_accelerate

    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, corpus=resolve_task_corpus(cfg.data.corpus))
    )
    m = cfg.model
    stage1_steps, _ = m.stage_steps(cfg.train.max_steps)  # ConfigError before any work
    tokenizer = run_tokenizer(cfg)
    run_dir = Path(run_dir)
    if m.stage1_steps and not m.runs_stage1:
        print(
            f"[uniattn] model.variant={m.variant} has no W_c: stage 1 "
            f"(model.stage1_steps={m.stage1_steps}) is skipped, training runs train.max_steps"
        )
    if m.runs_stage1:
        stage1_dir = run_dir / "stage1"
        if not (resume and (stage1_dir / "results.json").is_file()):
            trainable = "compensation" + ("|lm_head" if m.stage1_train_lm_head else "")
            t = cfg.train
            stage1 = dataclasses.replace(
                cfg,
                train=dataclasses.replace(
                    t,
                    max_steps=stage1_steps,
                    warmup_steps=min(t.warmup_steps, stage1_steps),
                    trainable=trainable,
                    eval_every=0,
                    save_every=0,
                ),
                name=f"{cfg.name}-stage1",
            )
            Trainer(
                stage1,
                stage1_dir,
                model=build_model(cfg, tokenizer),
                tokenizer=tokenizer,
                overwrite=True,
            ).train()
            reset_accelerate()
        # stage 2 reloads the stage-1 model, as the official code: fresh optimizer and schedule
        from .modeling import UniAttnForCausalLM

        model = UniAttnForCausalLM.from_pretrained(stage1_dir / "final").train()
    else:
        model = build_model(cfg, tokenizer)
    cfg = dataclasses.replace(cfg, train=m.stage2_train(cfg.train))  # split: fewer steps
    trainer = Trainer(
        cfg, run_dir, model=model, tokenizer=tokenizer, resume=resume, overwrite=overwrite
    )
    return trainer.train(resume=resume)


def check_inputs(cfg) -> None:
    """Before torch: the stage budget adds up, the base checkpoint exists, and the corpus (unless
    it is the synthetic task family, written on first use by :func:`run`)."""
    cfg.model.stage_steps(cfg.train.max_steps)
    if cfg.model.init_from:
        resolve_base(cfg.model.init_from)
    if cfg.data.corpus != CORPUS_NAME:
        resolve_corpus(cfg.data.corpus)


def main(argv: list[str] | None = None) -> int:
    """The core trainer's command line (checks first, ``error: ...`` + status 2 on bad input)."""
    return train_main(
        argv,
        UniAttnModelConfig,
        package_preset_dirs(__file__),
        "repro-uniattn-train",
        run=run,
        validate=check_inputs,
        description=__doc__.split("\n\n")[0],
    )


if __name__ == "__main__":
    sys.exit(main())
