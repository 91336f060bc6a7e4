"""Run an experiment grid declared as data: arms x settings x seeds.

A package's ``reproduce.py`` declares its grid and its claims and hands them to :func:`main`::

    GRID = Grid(package="finedeep", arms=(Arm("dense", ("model.variant=dense",)), ...),
                run=run_one, metrics=(Metric("val_perplexity", "val PPL", True, 2),))
    CLAIMS = (Claim('"..." (abstract)', "val_perplexity", "finedeep-2x4", "dense"),)

    def main(argv=None):
        return run_experiment(GRID, CLAIMS, argv)

The core does the rest: every (arm, setting, seed) runs in a fresh single-thread worker process
(``--jobs`` of them in parallel); a run whose directory holds ``result.json`` is finished and
skipped, so a killed grid resumes without redoing finished runs; each run is stamped (commit,
versions, hardware, load average, wall time); the per-run metrics are collected into
``results.json``; claims are judged by :mod:`repro_core.claims`; :mod:`repro_core.report` writes
``results.md``, the plot and the README block, and ``--report-only`` rebuilds them from
``results.json`` alone.

Run directories: ``$REPRO_RUNS_DIR/<package>/<preset>/<arm>[@<setting>][+<overrides hash>]/seed<seed>``
(``REPRO_RUNS_DIR`` defaults to ``runs``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

from .claims import Claim, judge
from .cli import ArgumentParser, cli_main
from .config import UserError
from .results import write_json_atomic

RESULT_FILE = "result.json"


class ExperimentError(UserError, ValueError):
    """A user error in a grid invocation (unknown arm, bad seeds, missing results)."""


@dataclass(frozen=True)
class Arm:
    """One arm of a grid: the preset (the grid's by default) with ``--set`` overrides; runs at
    every setting of the grid, or only at ``settings`` when given."""

    name: str
    overrides: tuple[str, ...] = ()
    preset: str | None = None
    settings: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))
        if self.settings is not None:
            object.__setattr__(self, "settings", tuple(self.settings))
        if not self.name or any(c in self.name for c in "/@+ "):
            raise ValueError(f"arm name {self.name!r}: use letters, digits, '-', '_', '.'")


@dataclass(frozen=True)
class Metric:
    """A per-run metric shown in the results table (``key`` in the run's returned dict)."""

    key: str
    label: str = ""
    lower_is_better: bool | None = None
    digits: int = 4


@dataclass(frozen=True)
class RunSpec:
    """What a run function receives. ``overrides`` = arm + setting + ``seed=`` + ``--set``."""

    package: str
    arm: str
    setting: str
    seed: int
    preset: str
    overrides: tuple[str, ...]
    run_dir: str

    @property
    def path(self) -> Path:
        return Path(self.run_dir)


@dataclass(frozen=True)
class Grid:
    """An experiment declared as data.

    Args:
        package: the package slug (results go to ``packages/<slug>/results/<preset>/``).
        arms: the arms compared.
        run: a top-level function ``(RunSpec) -> dict`` (pickled by name for the workers).
        seeds: default seeds (>= 3 for a verdict).
        settings: an optional axis, label -> overrides applied to every arm (``{"": ()}``: none).
        metrics: the columns of the results table.
        title: the heading of results.md.
        description: a paragraph under the heading (what is compared, at equal what).
        preflight: ``(preset, extra_overrides) -> None``, run once before any worker starts;
            raises ``ExperimentError`` (or ``ConfigError``) for a user error such as a missing
            base checkpoint, so that it is one line instead of a traceback per worker.
        config_loader: ``(preset, overrides) -> config``, without torch (e.g.
            ``config_loader(MyModelConfig, __file__)``): given, :func:`main` loads the config of
            every run (preset + arm + setting + ``--set``) before any worker starts, so that a
            bad ``--preset`` or ``--set`` is one error line instead of a failed run per worker.
        derive: ``(results) -> records``, records shaped like ``results["runs"]`` (``arm``,
            ``setting``, ``seed``, ``metrics``) computed from the runs, for claims about
            something other than an arm: several methods analysed on the same training runs
            ("train once, analyse many": each method a record 'arm', each analysis setting a
            record 'setting'), or a per-seed value that needs several runs (a ranking of the
            arms). Claims name them like arms; they are recomputed from ``results.json`` on
            ``--report-only`` and stored in ``results["derived"]``.
        derived_arms: the record names ``derive`` may produce (required with ``derive``): a
            claim naming neither an arm nor one of these is an error before any run starts,
            and a record outside them is an error when judging.
    """

    package: str
    arms: tuple[Arm, ...]
    run: Callable[[RunSpec], dict]
    seeds: tuple[int, ...] = (0, 1, 2)
    settings: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {"": ()})
    metrics: tuple[Metric, ...] = ()
    title: str = ""
    description: str = ""
    preflight: Callable[[str, tuple[str, ...]], None] | None = None
    config_loader: Callable[[str, Sequence[str]], object] | None = None
    derive: Callable[[dict], list[dict]] | None = None
    derived_arms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Grid {self.package!r}: duplicate arm names {dupes}")
        if not self.settings:
            object.__setattr__(self, "settings", {"": ()})
        for a in self.arms:
            unknown = [s for s in a.settings or () if s not in self.settings]
            if unknown:
                raise ValueError(f"arm {a.name!r} names unknown settings {unknown}")

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise ExperimentError(f"unknown arm {name!r}; arms: {[a.name for a in self.arms]}")

    def package_root(self) -> Path:
        """``packages/<slug>`` in a checkout (the folder above ``src/``)."""
        module = sys.modules[self.run.__module__]
        return Path(module.__file__).resolve().parents[2]


README_PRESET = "tiny"  # the preset whose results the package README's generated block shows


def runs_root() -> Path:
    return Path(os.environ.get("REPRO_RUNS_DIR", "runs"))


def run_dir(grid: Grid, preset: str, arm: str, setting: str, seed: int, extra=()) -> Path:
    name = arm + (f"@{setting}" if setting else "")
    if extra:
        name += "+" + hashlib.sha256("\n".join(extra).encode()).hexdigest()[:8]
    return runs_root() / grid.package / preset / name / f"seed{seed}"


def make_spec(grid: Grid, preset: str, arm: str, setting: str, seed: int, extra=()) -> RunSpec:
    a = grid.arm(arm)
    overrides = (*a.overrides, *grid.settings[setting], f"seed={seed}", *extra)
    return RunSpec(
        package=grid.package,
        arm=arm,
        setting=setting,
        seed=seed,
        preset=a.preset or preset,
        overrides=tuple(overrides),
        run_dir=str(run_dir(grid, preset, arm, setting, seed, extra)),
    )


# ----------------------------------------------------------------------------------------------
# Stamps


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.cache
def _versions() -> dict:
    from importlib import metadata

    names = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "numpy")
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.startswith("repro-") or name in names:
            out[name] = dist.version
    return dict(sorted(out.items()))


def hardware() -> str:
    """``x86_64, 2 CPU cores[, GPU name]`` (no torch import unless it is loaded already)."""
    text = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def _init_worker() -> None:
    """Single-thread workers: the grid's parallelism is across runs, not inside one."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def config_fingerprint(config) -> str | None:
    """Hash of a run's resolved config, stamped into its record so that a finished run trained
    under another preset file or package default is not reused (:func:`load_result`); None when
    the config is not a dataclass or dict."""
    if is_dataclass(config):
        config = asdict(config)
    if not isinstance(config, dict):
        return None
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def execute(
    grid_run: Callable[[RunSpec], dict],
    spec: RunSpec,
    commit: str | None,
    config_sha: str | None = None,
) -> dict:
    """Run one spec, stamp it and write ``result.json`` atomically (the 'finished' marker)."""
    torch = sys.modules.get("torch")  # a run that needs torch imports it; workers get 1 thread
    if torch is not None:
        torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.perf_counter()
    Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
    metrics = grid_run(spec)
    if not isinstance(metrics, dict):
        raise TypeError(f"{grid_run.__qualname__} returned {type(metrics).__name__}, not a dict")
    stamp = {
        "commit": commit,
        "versions": _versions(),
        "hardware": hardware(),
        "threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else 1,
        "load_average_start": round(load_start, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "started": started,
    }
    if config_sha is not None:
        stamp["config_sha"] = config_sha
    record = {"spec": asdict(spec), "metrics": metrics, "stamp": stamp}
    write_json_atomic(Path(spec.run_dir) / RESULT_FILE, record)
    return record


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """End this worker when the grid process that spawned it is gone (killed, not interrupted):
    an orphaned worker would go on training, and a restarted grid would train the same run
    directory beside it."""

    def watch():
        while True:
            time.sleep(every)
            if os.getppid() != parent:  # re-parented: the grid process has died
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _execute_in_worker(grid_run, spec: RunSpec, commit, config_sha=None, parent=None) -> dict:
    _init_worker()
    if parent is not None:
        _exit_with_parent(parent)
    return execute(grid_run, spec, commit, config_sha)


def load_result(spec: RunSpec, config_sha: str | None = None) -> dict | None:
    """The finished run's record, or None. A record made with other overrides, or (given
    ``config_sha``, see :func:`config_fingerprint`) under another resolved config or without a
    fingerprint to tell, is an error: the grid's declaration or preset changed, and silently
    reusing (or replacing) that run would be wrong."""
    path = Path(spec.run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if tuple(record["spec"]["overrides"]) != spec.overrides:
        raise ExperimentError(
            f"{path} was made with overrides {record['spec']['overrides']}, the grid now asks "
            f"for {list(spec.overrides)}: remove that run directory or set REPRO_RUNS_DIR"
        )
    saved = record.get("stamp", {}).get("config_sha")
    if config_sha is not None and saved != config_sha:
        why = (
            "has no config fingerprint to check"
            if saved is None
            else "was trained under another config"
        )
        raise ExperimentError(
            f"{path.parent} {why} than the grid's now (a preset or default changed since?): move "
            f"the run directory away (e.g. mv runs/{spec.package} runs/{spec.package}-old) or "
            "set REPRO_RUNS_DIR"
        )
    return record


def run_grid(
    grid: Grid,
    specs: Sequence[RunSpec],
    jobs: int = 1,
    log=print,
    shas: Mapping[str, str | None] | None = None,
) -> tuple[list, list]:
    """Run every spec that has no finished record; returns (records, failures).

    ``shas``: run directory -> config fingerprint (from :func:`check_configs`), stamped into
    new records and checked against finished ones.

    ``jobs >= 1``: that many worker processes, each run in a fresh one (clean global state:
    Accelerate, torch threads); ``jobs == 0``: in this process, one after the other.
    """
    records, todo, failures = {}, [], []
    shas = {s.run_dir: (shas or {}).get(s.run_dir) for s in specs}
    for spec in specs:
        rec = load_result(spec, shas[spec.run_dir])
        if rec is None:
            todo.append(spec)
        else:
            records[spec.run_dir] = rec
    log(f"[grid] {grid.package}: {len(specs)} runs, {len(records)} finished, {len(todo)} to run")
    commit = _git_commit()

    def done(spec, rec, i):
        records[spec.run_dir] = rec
        m = ", ".join(
            f"{k} {v:.4g}" for k, v in rec["metrics"].items() if isinstance(v, float | int)
        )
        log(f"[grid] {i}/{len(todo)} {spec.arm} {spec.setting} seed {spec.seed}: {m[:160]} "
            f"({rec['stamp']['wall_seconds']:.0f} s)")  # fmt: skip

    if jobs == 0:
        for i, spec in enumerate(todo, 1):
            if "accelerate" in sys.modules:  # a previous run's Trainer: forget its state
                from .train import reset_accelerate

                reset_accelerate()
            done(spec, execute(grid.run, spec, commit, shas[spec.run_dir]), i)
    elif todo:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
            futures = {
                pool.submit(
                    _execute_in_worker, grid.run, s, commit, shas[s.run_dir], os.getpid()
                ): s
                for s in todo
            }
            for i, fut in enumerate(as_completed(futures), 1):
                spec = futures[fut]
                try:
                    done(spec, fut.result(), i)
                except Exception as exc:  # a bug in one run: report it, keep the others
                    failures.append((spec, "".join(traceback.format_exception(exc))))
                    log(f"[grid] FAILED {spec.arm} {spec.setting} seed {spec.seed}: {exc!r}")
    ordered = [records[s.run_dir] for s in specs if s.run_dir in records]
    return ordered, failures


# ----------------------------------------------------------------------------------------------
# results.json


def per_seed_values(runs: list[dict], metric: str) -> dict[tuple[str, str], dict[int, float]]:
    """``{(arm, setting): {seed: value}}`` of one metric (dotted keys reach nested dicts)."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for r in runs:
        value = r["metrics"]
        for part in metric.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, int | float):  # absent, or a group of values (a dict)
            continue
        out.setdefault((r["arm"], r["setting"]), {})[int(r["seed"])] = float(value)
    return out


def judge_claims(claims: Sequence[Claim], runs: list[dict], settings: Sequence[str]) -> list:
    return [judge(c, per_seed_values(runs, c.metric), list(settings)) for c in claims]


def _check_claim_arms(grid: Grid, claims: Sequence[Claim]) -> None:
    """Every arm a claim names is a grid arm or a declared derived record (a typo would judge
    nothing and read as 'too few seeds')."""
    if grid.derive is not None and not grid.derived_arms:
        raise ValueError(f"grid {grid.package!r}: Grid.derive needs Grid.derived_arms")
    known = {a.name for a in grid.arms} | set(grid.derived_arms)
    for c in claims:
        unknown = [a for a in c.arms if a not in known]
        if unknown:
            raise ValueError(f"claim {c.text[:40]!r} names unknown arm(s) {unknown}")


def judge_results(grid: Grid, claims: Sequence[Claim], results: dict) -> None:
    """Set ``results["claims"]`` (and ``results["derived"]`` when the grid derives records)."""
    records = results["runs"]
    if grid.derive is not None:
        results["derived"] = grid.derive(results)
        strays = sorted({r["arm"] for r in results["derived"]} - set(grid.derived_arms))
        if strays:
            raise ValueError(f"Grid.derive made records {strays} outside Grid.derived_arms")
        records = records + results["derived"]
    results["claims"] = judge_claims(claims, records, list(results["grid"]["settings"]))


def collect(grid, claims, records, *, preset, seeds, arms, settings, extra, command, wall, jobs):
    runs = [
        {
            "arm": r["spec"]["arm"],
            "setting": r["spec"]["setting"],
            "seed": r["spec"]["seed"],
            "overrides": r["spec"]["overrides"],
            "run_dir": r["spec"]["run_dir"],
            "metrics": r["metrics"],
            "stamp": r["stamp"],
        }
        for r in records
    ]
    results = {
        "package": grid.package,
        "preset": preset,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": command,
        "hardware": hardware(),
        "jobs": jobs,
        "wall_seconds": round(wall, 1),
        "grid": {
            "arms": [asdict(grid.arm(a)) for a in arms],
            "settings": {s: list(grid.settings[s]) for s in settings},
            "seeds": list(seeds),
            "extra_overrides": list(extra),
        },
        "metrics": [asdict(m) for m in grid.metrics],
        "runs": runs,
        "claims": [],
        "extra": {},
    }
    judge_results(grid, claims, results)
    return results


# ----------------------------------------------------------------------------------------------
# The command line


def config_loader(model_config_cls, module_file: str) -> Callable[[str, Sequence[str]], object]:
    """A :attr:`Grid.config_loader` for a package whose runs load their config with
    ``load_config(preset, overrides, model_config_cls, package_preset_dirs(module_file))``."""
    from .config import load_config, package_preset_dirs

    dirs = package_preset_dirs(module_file)
    return lambda preset, overrides: load_config(preset, list(overrides), model_config_cls, dirs)


def _seedless(spec: RunSpec) -> tuple[str, ...]:
    return tuple(o for o in spec.overrides if not o.startswith("seed="))


def spec_fingerprint(grid: Grid, spec: RunSpec) -> str | None:
    """:func:`config_fingerprint` of a run's config, seed aside (one per seed set); None
    without :attr:`Grid.config_loader`. For a package that runs a grid spec itself."""
    if grid.config_loader is None:
        return None
    return config_fingerprint(grid.config_loader(spec.preset, _seedless(spec)))


def check_configs(grid: Grid, specs: Sequence[RunSpec]) -> dict[str, str | None]:
    """Load the config of every run with :attr:`Grid.config_loader` (seeds aside, once per
    preset and overrides); a bad one raises :class:`ExperimentError` naming its arm. Returns
    run directory -> :func:`spec_fingerprint` (empty without a loader)."""
    if grid.config_loader is None:
        return {}
    seen: dict[tuple, str | None] = {}
    for spec in specs:
        key = (spec.preset, _seedless(spec))
        if key in seen:
            continue
        try:
            seen[key] = spec_fingerprint(grid, spec)
        except UserError as exc:
            where = f"arm {spec.arm}" + (f" setting {spec.setting}" if spec.setting else "")
            raise ExperimentError(f"{where}: {exc}") from None
    return {s.run_dir: seen[(s.preset, _seedless(s))] for s in specs}


def _parse(grid: Grid, argv) -> argparse.Namespace:
    p = ArgumentParser(
        prog=f"python -m repro_{grid.package}.reproduce",
        description=grid.title or f"{grid.package} experiment grid",
    )
    p.add_argument("--preset", default="tiny", help="preset of every arm (default tiny)")
    p.add_argument("--seeds", default=",".join(map(str, grid.seeds)), help="comma-separated")
    p.add_argument("--arms", default=None, help=f"subset of {[a.name for a in grid.arms]}")
    p.add_argument("--settings", default=None, help=f"subset of {list(grid.settings)}")
    p.add_argument("--jobs", type=int, default=1, help="parallel single-thread worker processes")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override for every run (its runs get their own directories)")  # fmt: skip
    p.add_argument("--out", default=None, help="results folder (default results/<preset>)")
    p.add_argument(
        "--report-only", action="store_true", help="rebuild the report from results.json"
    )
    return p.parse_args(argv)


def _select(names: str | None, allowed: Sequence[str], what: str) -> list[str]:
    if names is None:
        return list(allowed)
    chosen = [n for n in names.split(",")] if names else [""]
    unknown = [n for n in chosen if n not in allowed]
    if unknown:
        raise ExperimentError(f"unknown {what} {unknown}; allowed: {list(allowed)}")
    return chosen


@cli_main
def main(
    grid: Grid,
    claims: Sequence[Claim] = (),
    argv: Sequence[str] | None = None,
    sections: Callable[[dict], list[str]] | None = None,
    finalize: Callable[[dict], dict] | None = None,
    plots: Callable[[dict, Path], list[str]] | None = None,
) -> int:
    """The ``reproduce.py`` command line of a package (see the module docstring).

    ``sections(results)``: extra markdown for results.md; ``finalize(results)``: measured once
    after the runs, stored in ``results["extra"]``; ``plots(results, out)``: the package's own
    figures, drawn into ``out`` from ``results.json`` alone (redrawn by ``--report-only``).
    """
    from . import report

    args = _parse(grid, argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ExperimentError(f"--seeds {args.seeds!r}: expected integers like 0,1,2") from None
        arms = _select(args.arms, [a.name for a in grid.arms], "arm(s)")
        settings = _select(args.settings, list(grid.settings), "setting(s)")
        _check_claim_arms(grid, claims)
        if args.jobs < 0:
            raise ExperimentError(f"--jobs {args.jobs}: expected 0 (in process) or more")
        default_out = grid.package_root() / "results" / args.preset
        out = Path(args.out) if args.out else default_out
        # The README's generated block shows the tiny grid: another preset (or another folder)
        # writes its own results folder and leaves the README alone.
        readme_owner = out == default_out and args.preset == README_PRESET
        readme = grid.package_root() / "README.md" if readme_owner else None
        if args.report_only:
            path = out / "results.json"
            if not path.is_file():
                raise ExperimentError(f"--report-only: no {path}; run the grid first")
            results = json.loads(path.read_text())
            judge_results(grid, claims, results)
            report.write(grid, results, out, readme=readme, sections=sections, plots=plots)
            print(f"[grid] rebuilt {out / 'results.md'} from {path}")
            return 0
    except ExperimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    specs = [
        make_spec(grid, args.preset, arm, setting, seed, tuple(args.overrides))
        for arm in arms
        for setting in settings
        if grid.arm(arm).settings is None or setting in grid.arm(arm).settings
        for seed in seeds
    ]
    try:
        shas = check_configs(grid, specs)
        if grid.preflight is not None:
            grid.preflight(args.preset, tuple(args.overrides))
    except UserError as exc:  # ExperimentError, ConfigError, a missing input
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        records, failures = run_grid(grid, specs, jobs=args.jobs, shas=shas)
    except ExperimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = f"python -m repro_{grid.package}.reproduce " + " ".join(argv)
    results = collect(
        grid, claims, records, preset=args.preset, seeds=seeds, arms=arms, settings=settings,
        extra=args.overrides, command=command.strip(), wall=time.perf_counter() - start,
        jobs=args.jobs,
    )  # fmt: skip
    previous = out / "results.json"
    if previous.is_file():  # package measurements of an earlier invocation stay unless remeasured
        results["extra"] = json.loads(previous.read_text()).get("extra", {})
    if finalize is not None:
        results["extra"] = results["extra"] | finalize(results)
    report.write(grid, results, out, readme=readme, sections=sections, plots=plots)
    print(f"[grid] wrote {out / 'results.md'} ({(time.perf_counter() - start) / 60:.1f} min)")
    for spec, tb in failures:
        print(
            f"[grid] run {spec.arm} {spec.setting} seed {spec.seed} failed:\n{tb}", file=sys.stderr
        )
    return 1 if failures else 0


def checkpoints(grid: Grid, preset: str = "tiny", seed: int = 0, setting: str = "") -> dict:
    """Arm -> final model directory of a grid's runs that exist (the lm-eval benchmarks' hook)."""
    out = {}
    for a in grid.arms:
        final = run_dir(grid, preset, a.name, setting, seed) / "final"
        if (final / "config.json").is_file():
            out[a.name] = str(final.resolve())
    return out


def train_run(spec: RunSpec, model_config_cls=None, preset_dirs=None, **trainer_kwargs):
    """Train ``spec`` with the core Trainer; returns ``(trainer, results)``.

    A run directory left by a killed run is resumed from its latest complete checkpoint (or
    restarted from step 0 when it has none): the grid owns its run directories.
    """
    from . import train as core_train
    from .config import ModelConfig, load_config, package_preset_dirs
    from .train import Trainer, latest_checkpoint

    cfg = load_config(
        spec.preset,
        [*spec.overrides, f"name={spec.arm}", "train.progress=false"],
        model_config_cls or ModelConfig,
        preset_dirs or package_preset_dirs(core_train.__file__),  # the core's presets by default
    )
    resume = latest_checkpoint(spec.path) is not None
    # the Trainer refuses a run directory holding a run unless told: resume it, or replace it
    trainer = Trainer(cfg, spec.path, resume=resume, overwrite=not resume, **trainer_kwargs)
    return trainer, trainer.train(resume=resume)


__all__ = [
    "Arm",
    "ExperimentError",
    "check_configs",
    "config_loader",
    "Grid",
    "Metric",
    "checkpoints",
    "RunSpec",
    "judge_claims",
    "judge_results",
    "main",
    "per_seed_values",
    "run_grid",
    "train_run",
]
