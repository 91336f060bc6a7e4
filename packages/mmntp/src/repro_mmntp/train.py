"""``repro-mmntp-train``: train one MMNTP system (image tokenizer + decoder LM) and evaluate it.

    repro-mmntp-train --preset tiny --run-dir runs/mmntp                     # canonical unified system
    repro-mmntp-train --preset tiny --set model.attention=prefix_lm          # prefix-LM mask
    repro-mmntp-train --preset tiny --set tokenizer.kind=fsq                 # FSQ codes
    repro-mmntp-train --preset tiny --set task.system=task_specific          # one LM per task
    repro-mmntp-train --preset tiny --set model.image_input=encoder --set model.projector=mlp

A run directory holds ``config.yaml``, ``meta.json``, ``results.json`` (metrics; the train
history), ``final/`` (the HF model; a task-specific system's generation model in
``final/generation``; ``image_tokenizer.pt``). Runs take a couple of minutes, so there are no mid-run
checkpoints: an interrupted run is started again. A run directory that already holds
``results.json`` is never overwritten (pass a new ``--run-dir``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import UserError
from repro_core.results import write_json_atomic, write_text_atomic

from .config import MMNTPRunConfig, load_run_config

if TYPE_CHECKING:  # torch loads when a function runs: the command line checks first
    from .pipeline import Context


def train_system(
    cfg: MMNTPRunConfig, cache_dir: Path | None = None, log=print
) -> tuple[Context, dict, dict]:
    """(context, {"caption": model, "generation": model}, training info)."""
    from .pipeline import prepare, sequences, train_lm

    ctx = prepare(cfg, cache_dir, log)
    t = cfg.task
    if t.system == "unified":
        model, info = train_lm(ctx, sequences(ctx, "train", t.tasks, cfg.seed), cfg.seed, log)
        return ctx, {"caption": model, "generation": model}, {"unified": info}
    models, info = {}, {}
    for task in ("caption", "generation"):
        models[task], info[task] = train_lm(
            ctx, sequences(ctx, "train", [task], cfg.seed), cfg.seed, log
        )
    return ctx, models, info


def run(
    cfg: MMNTPRunConfig,
    run_dir: Path | None = None,
    cache_dir: Path | None = None,
    log=print,
    overwrite: bool = False,
) -> dict:
    """Train and evaluate; with ``run_dir`` write config, metadata, results and the models.
    ``overwrite``: replace a finished run's files (the experiment grid owns its directories)."""
    import torch
    from repro_core.train import run_metadata

    from .system_metrics import evaluate_system

    torch.manual_seed(cfg.seed)
    if run_dir is not None:
        run_dir = Path(run_dir)
        if (run_dir / "results.json").exists() and not overwrite:
            raise FileExistsError(f"{run_dir} already holds a finished run; pass another --run-dir")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", cfg.to_yaml())
        write_json_atomic(run_dir / "meta.json", {**run_metadata(), "seed": cfg.seed})
    ctx, models, info = train_system(cfg, cache_dir, log)
    metrics = evaluate_system(ctx, models["caption"], models["generation"], cfg.seed)
    train_info = next(iter(info.values()))
    metrics["train_tokens_per_second"] = train_info["train_tokens_per_second"]
    metrics["train_seconds"] = sum(i["train_seconds"] for i in info.values())
    metrics["tokenizer_seconds"] = ctx.tokenizer_info.get("seconds", float("nan"))
    metrics["final_train_loss"] = train_info["final_train_loss"]
    metrics["parameters"] = sum(p.numel() for p in models["caption"].parameters())
    metrics["_test"] = ctx.data.test
    if run_dir is not None:
        # final/ is the (captioning) model; a second, generation-only model goes to final/generation
        final = run_dir / "final"
        models["caption"].save_pretrained(final)
        if models["generation"] is not models["caption"]:
            models["generation"].save_pretrained(final / "generation")
        torch.save(ctx.tokenizer.state_dict(), final / "image_tokenizer.pt")
        public = {k: v for k, v in metrics.items() if not k.startswith("_")}
        write_json_atomic(
            run_dir / "results.json",
            {"metrics": public, "train": info, "tokenizer": ctx.tokenizer_info},
        )
    return metrics


def load_run(run_dir: Path) -> tuple[Context, dict]:
    """The context (data, the saved tokenizer) and the models of a finished run directory."""
    import torch

    from .modeling import MMNTPForCausalLM
    from .pipeline import prepare
    from .tokenizers.training import tokenizer_key

    cfg = load_run_config(str(run_dir / "config.yaml"))
    state = torch.load(run_dir / "final" / "image_tokenizer.pt", weights_only=True)
    cache = run_dir / "final" / "tokenizer_cache"
    cache.mkdir(exist_ok=True)
    # put the saved tokenizer where prepare() looks for a trained one
    path = cache / f"{cfg.tokenizer.kind}-{tokenizer_key(cfg.tokenizer, cfg.data, cfg.seed)}.pt"
    torch.save({"state": state, "info": json.dumps({"loaded_from": str(run_dir)})}, path)
    ctx = prepare(cfg, cache, log=lambda *_: None)
    final = run_dir / "final"
    caption = MMNTPForCausalLM.from_pretrained(final).eval()
    generation = (
        MMNTPForCausalLM.from_pretrained(final / "generation").eval()
        if (final / "generation" / "config.json").is_file()
        else caption
    )
    models = {"caption": caption, "generation": generation}
    return ctx, models


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-mmntp-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="debug | tiny | small | paper | a .yaml path")
    p.add_argument(
        "--run-dir", default="runs/mmntp", help="output folder (must not hold a finished run)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. train.lr=3e-4",
    )
    p.add_argument(
        "--cache-dir", default=None, help="reuse trained image tokenizers from this folder"
    )
    args = p.parse_args(argv)
    # checks first (no torch): the config and the run directory
    cfg = load_run_config(args.preset, args.set)
    run_dir = Path(args.run_dir)
    if (run_dir / "results.json").exists():
        raise UserError(f"{run_dir} already holds a finished run; pass another --run-dir")
    import torch

    torch.set_num_threads(int(os.environ.get("REPRO_THREADS", torch.get_num_threads())))
    metrics = run(cfg, run_dir, Path(args.cache_dir) if args.cache_dir else None)
    shown = {
        k: round(v, 4) if isinstance(v, float) else v
        for k, v in metrics.items()
        if not k.startswith("_")
    }
    print(json.dumps(shown, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
