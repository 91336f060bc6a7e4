"""repro-bench: lm-eval on every package's reproduced checkpoints, offline.

    make bench                                   # every package that has reproduced checkpoints
    make bench PACKAGES=finedeep TASKS=piqa_local,wikitext2_local
    repro-bench --model runs/quickstart/final --limit 200     # any saved model directory
    repro-bench --list                           # registered packages, their checkpoints, local tasks

Writes ``benchmarks/results/lm_eval/results.json`` and ``results.md`` (rows: package and
variant, columns: tasks). Each row records the checkpoint it was measured on: its directory, a
SHA-256 of its config and weights, and the git commit of the run that trained it (``meta.json``
of the run directory; None when unknown), plus the commit of the evaluation. Every write first
drops the stale rows: a row whose checkpoint directory is gone, whose weights changed since, or
that records no checkpoint. So ``make bench`` rebuilds the table from the current checkpoints; a
later run on the same checkpoint adds task columns to its row.

A package declares its checkpoints with one entry point (no import of this package needed)::

    [project.entry-points."repro.bench"]
    finedeep = "repro_finedeep.reproduce:checkpoints"

``checkpoints() -> dict[str, str]`` maps a variant name to a model directory that exists
(``save_pretrained`` output with the tokenizer saved beside it, e.g. the ``final/`` of a run),
and returns ``{}`` before the package has been reproduced. Importing ``repro_<slug>`` must
register the package's classes with ``AutoModelForCausalLM`` (and ``AutoTokenizer`` for a custom
tokenizer); a model whose forward needs more than ``input_ids`` defines
``extra_forward_inputs(input_ids) -> dict`` (see :mod:`repro_core.harness`).

Task names are those of ``benchmarks/tasks/`` (offline, reading ``$REPRO_DATA_DIR``) or, with
network access, any of lm-eval's own (``lm-eval ls tasks``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import entry_points
from pathlib import Path

import yaml
from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import UserError
from repro_core.results import write_text_atomic

from repro_benchmarks import results_dir, tasks_dir

DEFAULT_TASKS = [
    "wikitext2_local",
    "lambada_openai_local",
    "hellaswag_local",
    "piqa_local",
    "arc_easy_local",
    "arc_challenge_local",
    "winogrande_local",
    "boolq_local",
    "openbookqa_local",
    "copa_local",
    *(f"harpe_{t}_local" for t in ("passkey", "niah_single", "niah_multikey", "vt", "cwe")),
]

# Metrics shown in the Markdown table (results.json keeps them all); lm-eval's usual headline
# metric per task (acc_norm where length normalisation is customary).
TABLE_METRICS = {
    "wikitext2_local": ["word_perplexity", "bits_per_byte"],
    "lambada_openai_local": ["perplexity", "acc"],
    "hellaswag_local": ["acc_norm"],
    "piqa_local": ["acc_norm"],
    "arc_easy_local": ["acc"],
    "arc_challenge_local": ["acc_norm"],
    "winogrande_local": ["acc"],
    "boolq_local": ["acc"],
    "openbookqa_local": ["acc_norm"],
    "copa_local": ["acc"],
    **{
        f"harpe_{t}_local": ["string_match_all"]
        for t in ("passkey", "niah_single", "niah_multikey", "vt", "cwe")
    },  # fmt: skip
}

MODEL_ROW = "(model)"  # the package column of a --model row
ENTRY_POINT_GROUP = "repro.bench"


class BenchError(UserError):
    """A problem the user fixes (bad name, missing file or checkpoint); printed without a traceback."""


# ----------------------------------------------------------------------------------------------
# Tasks


class _TaskYamlLoader(yaml.SafeLoader):
    """Reads our task YAMLs without executing ``!function`` tags."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def local_tasks(folder: Path | None = None) -> dict[str, list[str]]:
    """``{task name: [data files relative to $REPRO_DATA_DIR]}`` of the task YAMLs in ``folder``."""
    out = {}
    for path in sorted((folder or tasks_dir()).glob("*.yaml")):
        spec = yaml.load(path.read_text(), Loader=_TaskYamlLoader) or {}
        if "group" in spec:  # a group lists tasks, it reads no file itself
            out[spec["group"]] = []
        elif "task" in spec:
            files = (spec.get("dataset_kwargs") or {}).get("data_files") or {}
            out[spec["task"]] = list(files.values())
    return out


def _local_data_module(folder: Path):
    spec = importlib.util.spec_from_file_location(
        "repro_bench_local_data", folder / "local_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_task_data(tasks: list[str], folder: Path | None = None) -> None:
    """Fail before any model is loaded when a local task's data file is missing."""
    folder = folder or tasks_dir()
    known = local_tasks(folder)
    local_data = _local_data_module(folder)
    for task in tasks:
        for relative in known.get(task, []):
            try:
                local_data.data_file(relative, task)
            except local_data.MissingDataError as exc:
                raise BenchError(str(exc)) from None


def resolve_tasks(tasks: list[str]):
    """An lm-eval TaskManager for ``tasks``; unknown names become a :class:`BenchError`."""
    from repro_core.harness import UnknownTaskError, task_manager

    try:
        return task_manager(tasks, include_path=tasks_dir())
    except UnknownTaskError as exc:
        raise BenchError(str(exc)) from None


# ----------------------------------------------------------------------------------------------
# Models: packages' checkpoints and --model directories


def registered_packages() -> dict[str, object]:
    """``{slug: entry point}`` of the ``repro.bench`` group."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _package_checkpoints(slug: str, ep) -> dict[str, str]:
    package = ep.module.split(".")[0]
    importlib.import_module(package)
    if importlib.util.find_spec(f"{package}.modeling") is not None:
        importlib.import_module(f"{package}.modeling")  # registers the package's model classes
    found = ep.load()()
    if not isinstance(found, dict):
        raise BenchError(
            f"{ep.value} returned {type(found).__name__}; it must return a dict variant -> model dir"
        )
    return {str(k): str(v) for k, v in found.items()}


def collect_models(
    packages: list[str] | None, model_dirs: list[str]
) -> list[tuple[str, str, Path]]:
    """``[(package, variant, model dir)]`` to evaluate; every directory is checked to hold a model.

    ``packages=None`` means every registered package, unless ``model_dirs`` are given alone.
    """
    registered = registered_packages()
    if packages:
        unknown = [p for p in packages if p not in registered]
        if unknown:
            raise BenchError(
                f"package(s) {unknown} registered no checkpoints hook; registered: {sorted(registered)}. "
                f'A package registers in its pyproject.toml: [project.entry-points."{ENTRY_POINT_GROUP}"] '
                '<slug> = "repro_<slug>.reproduce:checkpoints" (then `uv sync`)'
            )
    selected = packages if packages is not None else ([] if model_dirs else sorted(registered))
    models, empty = [], []
    for slug in selected:
        try:
            checkpoints = _package_checkpoints(slug, registered[slug])
        except BenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken package's hook
            message = f"package {slug}: its hook {registered[slug].value} failed: {type(exc).__name__}: {exc}"
            if packages:  # asked for by name: an error
                raise BenchError(message) from exc
            print(f"[bench] skipping {message}", file=sys.stderr, flush=True)
            continue
        if not checkpoints:
            empty.append(slug)
        for variant, directory in sorted(checkpoints.items()):
            if not (Path(directory) / "config.json").is_file():
                raise BenchError(
                    f"package {slug}, variant {variant}: no model at {directory} (no config.json); "
                    f"produce it with `make reproduce-{slug}`"
                )
            models.append((slug, variant, Path(directory)))
    if packages and empty:
        raise BenchError(
            f"package(s) {empty} have no reproduced checkpoints yet; produce them with "
            + ", ".join(f"`make reproduce-{s}`" for s in empty)
        )
    for directory in model_dirs:
        if not (Path(directory) / "config.json").is_file():
            raise BenchError(
                f"--model {directory}: no model there (no config.json). Train one first: "
                "`make quickstart` writes runs/quickstart/final; a run's model is <run dir>/final"
            )
        models.append((MODEL_ROW, directory, Path(directory)))
    if not models:
        hint = f" (packages without any: {', '.join(empty)})" if empty else " (none is registered)"
        raise BenchError(
            f"nothing to evaluate: no package has reproduced checkpoints{hint}. Run "
            "`make reproduce-<slug>` first, or evaluate one model directory with "
            "`repro-bench --model runs/quickstart/final` (after `make quickstart`)"
        )
    return models


# ----------------------------------------------------------------------------------------------
# Results


def checkpoint_sha256(directory: str | Path) -> str:
    """SHA-256 over ``config.json`` and every ``*.safetensors`` file of a model directory (names
    and bytes, in name order): changes whenever the model that a row was measured on changes."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in [directory / "config.json", *sorted(directory.glob("*.safetensors"))]:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def git_commit(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of ``cwd`` (this process's directory by default), None outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def checkpoint_record(directory: str | Path) -> dict:
    """Where a row's numbers come from: ``{"path", "sha256", "commit"}``. ``commit`` is the git
    commit of the training run, read from the ``meta.json`` the core Trainer writes in the run
    directory (the parent of ``final/``), or None when there is none."""
    directory = Path(directory).resolve()
    commit = None
    for meta in (directory / "meta.json", directory.parent / "meta.json"):
        if meta.is_file():
            commit = json.loads(meta.read_text()).get("git_commit")
            break
    return {"path": str(directory), "sha256": checkpoint_sha256(directory), "commit": commit}


def stale_reason(row: dict) -> str | None:
    """Why a row no longer describes a current checkpoint, or None when it still does."""
    ckpt = row.get("checkpoint")
    if not ckpt or not ckpt.get("sha256"):
        return "it records no checkpoint (made before rows recorded theirs)"
    if not (Path(ckpt["path"]) / "config.json").is_file():
        return f"its checkpoint {ckpt['path']} no longer exists"
    if checkpoint_sha256(ckpt["path"]) != ckpt["sha256"]:
        return f"its checkpoint {ckpt['path']} changed since (retrained)"
    return None


def drop_stale_rows(rows: list[dict], log=print) -> list[dict]:
    """The rows whose checkpoint is still the one they were measured on (see
    :func:`stale_reason`); each dropped row is reported through ``log``."""
    kept = []
    for row in rows:
        reason = stale_reason(row)
        if reason is None:
            kept.append(row)
        else:
            log(f"[bench] dropping the row {row['package']} / {row['variant']}: {reason}")
    return kept


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Rows keyed by (package, variant); a new run's tasks update an existing row's tasks when
    both were measured on the same checkpoint (same SHA-256), else the new row replaces it."""
    rows = {(r["package"], r["variant"]): r for r in old}
    for row in new:
        key = (row["package"], row["variant"])
        same = (rows.get(key, {}).get("checkpoint") or {}).get("sha256") == (
            row.get("checkpoint") or {}
        ).get("sha256")
        if key in rows and same:
            merged = {**rows[key], **{k: v for k, v in row.items() if k != "tasks"}}
            merged["tasks"] = {**rows[key]["tasks"], **row["tasks"]}
            rows[key] = merged
        else:
            rows[key] = row
    return sorted(
        rows.values(), key=lambda r: (r["package"] == MODEL_ROW, r["package"], r["variant"])
    )


def _format(metric: str, value: float) -> str:
    if "perplexity" in metric:
        return f"{value:,.2f}"
    return f"{value:.4f}" if metric == "bits_per_byte" else f"{value:.3f}"


def to_markdown(report: dict) -> str:
    """The table: one row per package and variant, one column per task metric."""
    tasks = []
    for row in report["rows"]:
        tasks += [t for t in row["tasks"] if t not in tasks]
    columns = []
    for task in tasks:
        metrics = TABLE_METRICS.get(task)
        if metrics is None:  # a task not in our list: its first metrics
            seen = next(r["tasks"][task]["metrics"] for r in report["rows"] if task in r["tasks"])
            metrics = list(seen)[:2]
        columns += [(task, m) for m in metrics]
    header = ["package", "variant", "checkpoint (run commit, weights sha256)"]
    header += [f"{t.removesuffix('_local')} {m}" for t, m in columns]
    lines = [
        f"# lm-eval results ({report['date']})",
        "",
        f"lm-eval {report['lm_eval_version']}, offline task YAMLs in `benchmarks/tasks/` "
        "(data from `$REPRO_DATA_DIR`), zero-shot unless noted, no stderr bootstrap. "
        "A cell marked `(n=...)` was evaluated on the first n documents only. All metrics of every "
        "task, each row's checkpoint path, its full SHA-256, the date and the commit of the "
        "evaluation are in `results.json`. Rows whose checkpoint is gone or was retrained are "
        "dropped whenever `repro-bench` writes this table.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for row in report["rows"]:
        ckpt = row["checkpoint"]
        commit = (ckpt["commit"] or "unknown")[:10]
        cells = [row["package"], row["variant"], f"`{commit}`, `{ckpt['sha256'][:12]}`"]
        for task, metric in columns:
            entry = row["tasks"].get(task)
            if entry is None or metric not in entry["metrics"]:
                cells.append("")
                continue
            cell = _format(metric, entry["metrics"][metric])
            if entry["documents"] < entry["documents_total"]:
                cell += f" (n={entry['documents']})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Runs:", ""]
    lines += [
        f"- `{run['command']}` ({run['hardware']}, {run['seconds']:.0f} s)"
        for run in report["runs"]
    ]
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[dict], run: dict | None = None) -> dict:
    """Drop the stale rows of ``out/results.json``, merge ``rows`` (and the ``run`` record) into
    it and rewrite ``out/results.md``; returns the report."""
    import lm_eval

    path = out / "results.json"
    report = json.loads(path.read_text()) if path.is_file() else {"rows": [], "runs": []}
    report.update(date=date.today().isoformat(), lm_eval_version=lm_eval.__version__)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    report["rows"] = merge_rows(drop_stale_rows(report["rows"], log), rows)
    if run is not None:
        report["runs"].append(run)
    write_text_atomic(path, json.dumps(report, indent=1))
    write_text_atomic(out / "results.md", to_markdown(report))
    return report


# ----------------------------------------------------------------------------------------------
# CLI


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _print_registry() -> None:
    print(f"local tasks ({tasks_dir()}):")
    for task, files in local_tasks().items():
        print(f"  {task}: {', '.join(files) or '(group)'}")
    print(f"packages (entry-point group {ENTRY_POINT_GROUP}):")
    for slug, ep in sorted(registered_packages().items()):
        try:
            checkpoints = _package_checkpoints(slug, ep)
        except Exception as exc:  # report and continue: this is a listing
            checkpoints = {"<error>": f"{type(exc).__name__}: {exc}"}
        print(f"  {slug}: {checkpoints or 'no reproduced checkpoints'}")


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--packages", help="comma-separated package slugs (default: every package with checkpoints)"
    )
    p.add_argument(
        "--tasks", help=f"comma-separated task names (default: {','.join(DEFAULT_TASKS)})"
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="DIR",
        help="also evaluate this saved model directory (repeatable); alone, only it",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first (registers a --model's classes), e.g. repro_finedeep",
    )
    p.add_argument(
        "--limit",
        type=float,
        default=None,
        help="documents per task (an int, or a fraction < 1); default: all",
    )
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="context window in tokens (default: the model's max_position_embeddings)",
    )
    p.add_argument(
        "--device", default=None, help="cpu | cuda | cuda:1 ... (default: cuda when available)"
    )
    p.add_argument(
        "--dtype",
        choices=("bf16", "fp32"),
        default=None,
        help="weights' dtype (default: bf16 on a GPU that supports it, else fp32); logits are fp32",
    )
    p.add_argument(
        "--out", default=None, help="output folder (default: benchmarks/results/lm_eval)"
    )
    p.add_argument(
        "--list", action="store_true", help="list local tasks and registered packages, then exit"
    )
    args = p.parse_args(argv)
    if args.list:
        _print_registry()
        return 0
    return _run(args, argv)  # a BenchError is printed as one line "error: ...", status 2


def _run(args, argv) -> int:
    import torch
    from repro_core.harness import evaluate, load_model, summary

    tasks = _csv(args.tasks) or DEFAULT_TASKS
    packages = _csv(args.packages)
    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    for module in args.imports:
        importlib.import_module(module)
        if "." not in module and importlib.util.find_spec(f"{module}.modeling") is not None:
            importlib.import_module(f"{module}.modeling")  # a package registers with its modeling
    resolve_tasks(tasks)  # bad names fail here, before any model is loaded
    check_task_data(tasks)
    models = collect_models(packages, args.model)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or (
        "bf16"
        if str(device).startswith("cuda")
        and torch.cuda.is_available()
        and torch.cuda.is_bf16_supported()
        else "fp32"
    )
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]

    out = Path(args.out) if args.out else results_dir() / "lm_eval"
    started = time.time()
    bench_commit = git_commit(Path(__file__).parent)
    for package, variant, directory in models:
        t0 = time.time()
        print(f"[bench] {package} / {variant}: {directory} on {tasks}", flush=True)
        checkpoint = checkpoint_record(directory)  # before loading: the weights measured
        try:
            model, tokenizer = load_model(directory, device=device, dtype=dtype)
        except (ValueError, FileNotFoundError) as exc:
            raise BenchError(f"{package} / {variant}: {exc}") from None
        res = evaluate(
            model,
            tokenizer,
            tasks,
            include_path=tasks_dir(),
            limit=limit,
            num_fewshot=args.num_fewshot,
            batch_size=args.batch_size,
            max_length=args.max_length,
        )
        metrics = summary(res)
        row_tasks = {
            task: {
                "metrics": metrics.get(task, {}),
                "documents": res["n-samples"].get(task, {}).get("effective"),
                "documents_total": res["n-samples"].get(task, {}).get("original"),
                "num_fewshot": (res.get("n-shot") or {}).get(task),
                "limit": limit,
            }
            for task in tasks
            if task in res["n-samples"]
        }
        row = {
            "package": package,
            "variant": variant,
            "model_dir": str(directory),
            "checkpoint": checkpoint,
            "date": date.today().isoformat(),
            "bench_commit": bench_commit,
            "model_type": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()),
            "max_length": args.max_length or getattr(model.config, "max_position_embeddings", None),
            "tasks": row_tasks,
            "seconds": round(time.time() - t0, 1),
        }
        print(
            f"[bench] {package} / {variant}: "
            + json.dumps({t: v["metrics"] for t, v in row_tasks.items()}),
            flush=True,
        )
        write_report(out, [row])  # after each model: a later failure keeps the earlier rows
        del model

    run = {
        "command": " ".join(["repro-bench", *(argv if argv is not None else sys.argv[1:])]),
        "hardware": f"{platform.machine()}, {os.cpu_count()} cores, device {device}, {dtype_name}",
        "seconds": time.time() - started,
        "date": date.today().isoformat(),
    }
    write_report(out, [], run)
    print(f"[bench] wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
