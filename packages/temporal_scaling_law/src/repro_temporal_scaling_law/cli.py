"""Command line: ``repro-tsl-fit`` (one run) and ``repro-tsl-rank`` (several runs).

    repro-tsl-fit --run runs/tiny --fit-until 0.2                     # writes runs/tiny/tsl/
    repro-tsl-fit --run runs/tiny --fit-until 0.3 --law position_power --form a2=power --out out/
    repro-tsl-rank --runs runs/mix0 runs/mix25 runs/mix50 --fit-until 0.2 --out out/ranking

Defaults come from ``configs/fit.yaml`` (shipped with the package); flags override them.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import yaml
from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import UserError

from .baselines import BASELINE_FORMS
from .position_laws import POSITION_LAWS
from .temporal_forms import TEMPORAL_FORMS

FIT_FILE = "tsl_fit.json"
FIT_PLOT = "tsl_fit.png"
RANK_FILE = "tsl_ranking.json"
RANK_PLOT = "tsl_ranking.png"


def default_settings() -> dict:
    """The fitting defaults of ``configs/fit.yaml`` (installed as ``_configs/fit.yaml``)."""
    installed = resources.files("repro_temporal_scaling_law") / "_configs" / "fit.yaml"
    source = Path(__file__).resolve().parents[2] / "configs" / "fit.yaml"  # editable checkout
    text = installed.read_text() if installed.is_file() else source.read_text()
    return yaml.safe_load(text)


def _parse_forms(pairs: list[str]) -> dict[str, str]:
    forms = {}
    for pair in pairs:
        name, sep, form = pair.partition("=")
        if not sep or not name or not form:
            raise SystemExit(f"--form takes PARAM=FORM (e.g. a2=power), got {pair!r}")
        forms[name] = form
    return forms


def _common_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    parser.add_argument(
        "--fit-until",
        type=float,
        default=defaults["fit_until"],
        help="end of the fitting window, fraction of train.max_steps (default %(default)s)",
    )
    parser.add_argument(
        "--fit-from",
        type=float,
        default=defaults["fit_from"],
        help="start of the window, fraction of max_steps (default: end of warmup)",
    )
    parser.add_argument(
        "--law",
        default=defaults["law"],
        choices=sorted(POSITION_LAWS),
        help="per-position law (default %(default)s)",
    )
    parser.add_argument(
        "--form",
        action="append",
        default=[],
        metavar="PARAM=FORM",
        help=f"temporal form of a law parameter, repeatable; forms: {', '.join(sorted(TEMPORAL_FORMS))}",
    )
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=defaults["baselines"],
        choices=sorted(BASELINE_FORMS),
        help="aggregate-loss baselines (default: all)",
    )
    parser.add_argument(
        "--min-r2",
        type=float,
        default=defaults["min_r2"],
        help="stage-1 R^2 needed to use a checkpoint (default %(default)s)",
    )
    parser.add_argument(
        "--index-offset",
        type=int,
        default=defaults["index_offset"],
        help="law index i = position + offset (default %(default)s)",
    )
    parser.add_argument(
        "--first-position",
        type=int,
        default=defaults["first_position"],
        help="leave positions below this out of the fits (default %(default)s)",
    )
    parser.add_argument(
        "--joint-refine",
        action=argparse.BooleanOptionalAction,
        default=defaults["joint_refine"],
        help="refine all temporal coefficients on the per-position losses",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="planned steps, if config.yaml lacks train.max_steps",
    )


def _fit_kwargs(args: argparse.Namespace, defaults: dict) -> dict:
    return {
        "law": args.law,
        "forms": {**(defaults.get("forms") or {}).get(args.law, {}), **_parse_forms(args.form)},
        "baselines": args.baselines,
        "fit_from": args.fit_from,
        "min_r2": args.min_r2,
        "index_offset": args.index_offset,
        "first_position": args.first_position,
        "joint_refine": args.joint_refine,
        "max_steps": args.max_steps,
    }


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``repro-tsl-fit``: fit one run, print the summary, write JSON + PNG."""
    from repro_core.results import write_json_atomic

    from .api import fit_run
    from .report import format_fit_summary, plot_fit, to_json_ready
    from .run_data import RunFormatError

    defaults = default_settings()
    parser = ArgumentParser(
        prog="repro-tsl-fit",
        description="Fit the temporal scaling law on the early part of a run and predict the rest.",
    )
    parser.add_argument(
        "--run", required=True, help="run directory with position_loss.npz and config.yaml"
    )
    parser.add_argument("--out", default=None, help="output directory (default RUN/tsl)")
    _common_arguments(parser, defaults)
    args = parser.parse_args(argv)
    try:
        result = fit_run(args.run, fit_until=args.fit_until, **_fit_kwargs(args, defaults))
    except (RunFormatError, ValueError) as error:
        raise UserError(str(error)) from None
    out = Path(args.out) if args.out else Path(args.run) / "tsl"
    # files first: a closed stdout loses nothing
    json_path = write_json_atomic(out / FIT_FILE, to_json_ready(result), indent=2)
    plot_path = plot_fit(result, out / FIT_PLOT)
    print(format_fit_summary(result))
    print(f"wrote {json_path} and {plot_path}")
    return 0


@cli_main
def rank_main(argv: list[str] | None = None) -> int:
    """``repro-tsl-rank``: rank several runs by predicted final loss, compare with measured."""
    from repro_core.results import write_json_atomic

    from .ranking import rank_runs
    from .report import format_ranking_summary, plot_ranking, to_json_ready
    from .run_data import RunFormatError

    defaults = default_settings()
    parser = ArgumentParser(
        prog="repro-tsl-rank",
        description="Rank runs (e.g. data mixtures) by the loss predicted from their early window.",
    )
    parser.add_argument("--runs", nargs="+", required=True, help="complete run directories")
    parser.add_argument("--out", required=True, help="output directory")
    _common_arguments(parser, defaults)
    args = parser.parse_args(argv)
    try:
        ranking = rank_runs(args.runs, fit_until=args.fit_until, **_fit_kwargs(args, defaults))
    except (RunFormatError, ValueError) as error:
        raise UserError(str(error)) from None
    out = Path(args.out)
    json_path = write_json_atomic(out / RANK_FILE, to_json_ready(ranking), indent=2)
    plot_path = plot_ranking(ranking, out / RANK_PLOT)
    print(format_ranking_summary(ranking))
    print(f"wrote {json_path} and {plot_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
