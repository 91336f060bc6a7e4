"""``repro-mmntp-eval``: the metrics of :mod:`repro_mmntp.system_metrics` on a saved run.

repro-mmntp-eval --run-dir runs/mmntp          # re-evaluate a saved run (final/)

The run directory and its config are checked before torch is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

from repro_core import lazy_exports
from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import MissingInputError

# the metric functions live in system_metrics (torch); importable from here as before
_EXPORTS = {
    name: "repro_mmntp.system_metrics"
    for name in (
        "caption_metrics",
        "evaluate_system",
        "generation_metrics",
        "icl_metrics",
        "tokenizer_metrics",
    )
}
__getattr__ = lazy_exports(__name__, _EXPORTS)


def check_run_dir(run_dir: Path) -> None:
    """A finished run of ``repro-mmntp-train`` is in ``run_dir``, with a valid config."""
    from .config import load_run_config

    for need in ("config.yaml", "final/config.json", "final/image_tokenizer.pt"):
        if not (run_dir / need).is_file():
            raise MissingInputError(
                f"{run_dir} holds no finished MMNTP run (no {need}): pass the --run-dir of a "
                "finished repro-mmntp-train run"
            )
    load_run_config(str(run_dir / "config.yaml"))


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-mmntp-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", required=True, help="a run directory written by repro-mmntp-train")
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    check_run_dir(run_dir)
    # the heavy stack from here on
    from .system_metrics import evaluate_system
    from .train import load_run

    ctx, models = load_run(run_dir)
    metrics = evaluate_system(ctx, models["caption"], models["generation"], ctx.cfg.seed)
    print(json.dumps({k: v for k, v in metrics.items() if not k.startswith("_")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
