"""repro_core.experiment: a grid declared as data runs, resumes after a kill, and reports."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # spawned workers inherit sys.path and import the fixture by name
import experiment_fixture as fx  # noqa: E402


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GRID_LOG", str(tmp_path / "starts.log"))
    monkeypatch.setenv("GRID_SLEEP", "0")
    return tmp_path


def starts(tmp_path):
    log = tmp_path / "starts.log"
    return log.read_text().splitlines() if log.exists() else []


def test_grid_runs_every_cell_once_and_judges_the_claims(env):
    out = env / "results"
    assert fx.main(["--jobs", "0", "--out", str(out)]) == 0
    assert len(starts(env)) == 3 * 2 * 3
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 18
    run = results["runs"][0]
    assert set(run["stamp"]) >= {"commit", "versions", "hardware", "wall_seconds",
                                 "load_average_start", "load_average_end"}  # fmt: skip
    assert run["overrides"][-1] == f"seed={run['seed']}"
    better, same = results["claims"]
    assert [r["setting"] for r in better["rows"]] == ["V1k", "V2k"]
    assert better["verdict"] == "reproduced"  # method is 0.5 (1.0 at V2k) lower for every seed
    assert same["verdict"] == "reproduced"  # identical values: CI [0, 0] inside +-0.01
    md = (out / "results.md").read_text()
    assert "paired, 3" in md and "**reproduced**" in md
    assert (out / "results.png").stat().st_size > 0
    # a second invocation finds every run finished and starts none
    assert fx.main(["--jobs", "0", "--out", str(out)]) == 0
    assert len(starts(env)) == 18


def test_parallel_workers_give_the_same_results_as_in_process(env):
    fx.main(
        ["--jobs", "0", "--out", str(env / "a"), "--arms", "baseline,method", "--settings", "V1k"]
    )
    os.environ["REPRO_RUNS_DIR"] = str(env / "runs2")
    fx.main(
        ["--jobs", "2", "--out", str(env / "b"), "--arms", "baseline,method", "--settings", "V1k"]
    )
    a, b = (json.loads((env / d / "results.json").read_text()) for d in "ab")
    assert [r["metrics"] for r in a["runs"]] == [r["metrics"] for r in b["runs"]]
    assert a["claims"][0]["rows"] == b["claims"][0]["rows"]


def test_a_killed_grid_resumes_and_runs_only_the_rest(env):
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import experiment_fixture as f; "
        f"sys.exit(f.main(['--jobs', '0', '--out', {str(env / 'out')!r}, '--settings', 'V1k']))"
    )
    proc_env = os.environ | {"GRID_SLEEP": "0.6"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=proc_env)
    runs = Path(os.environ["REPRO_RUNS_DIR"])
    deadline = time.time() + 120
    while len(list(runs.rglob("result.json"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished = len(list(runs.rglob("result.json")))
    assert 3 <= finished < 9, "the grid was not killed half way"
    first = len(starts(env))
    proc = subprocess.run([sys.executable, "-c", code], env=os.environ | {"GRID_SLEEP": "0"})
    assert proc.returncode == 0
    restarted = starts(env)[first:]
    assert len(restarted) == 9 - finished  # only the unfinished runs started again
    results = json.loads((env / "out" / "results.json").read_text())
    assert len(results["runs"]) == 9


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_exit_when_the_grid_process_is_killed(env):
    pids = env / "pids.txt"
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import experiment_fixture as f; "
        f"sys.exit(f.main(['--jobs', '2', '--out', {str(env / 'out')!r}, '--settings', 'V1k']))"
    )
    proc_env = os.environ | {"GRID_SLEEP": "120", "GRID_PIDS": str(pids)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=proc_env)
    deadline = time.time() + 120
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    proc.kill()  # SIGKILL: no handler in the grid process runs
    proc.wait()
    deadline = time.time() + 20
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "a worker outlived the killed grid process"
    assert not list(Path(os.environ["REPRO_RUNS_DIR"]).rglob("result.json"))


def test_report_only_rebuilds_the_report_byte_for_byte(env):
    out = env / "results"
    fx.main(["--jobs", "0", "--out", str(out)])
    before = {p: (out / p).read_bytes() for p in ("results.md", "results.json", "results.png")}
    (out / "results.md").write_text("edited by hand\n")
    assert fx.main(["--report-only", "--out", str(out)]) == 0
    after = {p: (out / p).read_bytes() for p in ("results.md", "results.json", "results.png")}
    assert after == before


def test_a_run_made_with_other_overrides_is_never_reused_silently(env, capsys):
    out = env / "results"
    fx.main(["--jobs", "0", "--out", str(out), "--arms", "baseline", "--settings", "V1k"])
    record = next(Path(os.environ["REPRO_RUNS_DIR"]).rglob("result.json"))
    data = json.loads(record.read_text())
    data["spec"]["overrides"] = ["model.x=99", *data["spec"]["overrides"][1:]]
    record.write_text(json.dumps(data))
    code = fx.main(["--jobs", "0", "--out", str(out), "--arms", "baseline", "--settings", "V1k"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "model.x=99" in err[0]


def test_a_run_trained_under_another_config_is_never_reused_silently(env, capsys):
    """The arm overrides can stay the same while the preset file or a package default changes:
    each record carries its config's fingerprint and a finished run under another one is refused
    (as is one without a fingerprint); a subset of the seeds is not a change."""
    import dataclasses

    from repro_core.experiment import main as run_experiment

    preset = {"lr": 1e-3}
    grid = dataclasses.replace(fx.GRID, config_loader=lambda p, o: {"preset": dict(preset), "o": o})
    argv = ["--jobs", "0", "--out", str(env / "results"), "--arms", "baseline", "--settings", "V1k"]
    assert run_experiment(grid, fx.CLAIMS, argv) == 0
    assert run_experiment(grid, fx.CLAIMS, [*argv, "--seeds", "1"]) == 0  # reused, not refused
    assert len(starts(env)) == 3
    records = sorted(Path(os.environ["REPRO_RUNS_DIR"]).rglob("result.json"))
    shas = {json.loads(r.read_text())["stamp"]["config_sha"] for r in records}
    assert len(shas) == 1  # the seeds share one fingerprint
    capsys.readouterr()
    preset["lr"] = 1e-4  # the preset file changed under finished runs
    assert run_experiment(grid, fx.CLAIMS, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained under another config" in err[0] and "REPRO_RUNS_DIR" in err[0]
    assert len(starts(env)) == 3  # nothing retrained, nothing overwritten
    preset["lr"] = 1e-3
    data = json.loads(records[0].read_text())
    del data["stamp"]["config_sha"]  # a run made before fingerprints: cannot tell
    records[0].write_text(json.dumps(data))
    assert run_experiment(grid, fx.CLAIMS, argv) == 2
    assert "no config fingerprint" in capsys.readouterr().err


def test_a_bad_config_is_one_error_line_before_any_run_starts(env, capsys):
    """With Grid.config_loader, every (arm, setting) config is loaded once (not per seed) before
    the first run; a loader's ConfigError names the arm and no run starts."""
    import dataclasses

    from repro_core.config import ConfigError
    from repro_core.experiment import main as run_experiment

    loaded = []

    def loader(preset, overrides):
        loaded.append((preset, tuple(overrides)))
        if "model.bad=1" in overrides:
            raise ConfigError("unknown config key(s) ['model.bad']")

    grid = dataclasses.replace(fx.GRID, config_loader=loader)
    argv = ["--jobs", "0", "--out", str(env / "results"), "--set", "model.bad=1"]
    assert run_experiment(grid, fx.CLAIMS, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: arm baseline setting V1k: unknown config key(s) ['model.bad']"]
    assert starts(env) == []
    loaded.clear()
    assert run_experiment(grid, fx.CLAIMS, ["--jobs", "0", "--out", str(env / "results")]) == 0
    assert len(loaded) == 3 * 2  # arms x settings, the three seeds share a config
    assert len(starts(env)) == 3 * 2 * 3


def test_user_errors_are_one_line(env, capsys):
    assert fx.main(["--arms", "nope"]) == 2
    assert fx.main(["--seeds", "a,b"]) == 2
    assert fx.main(["--report-only", "--out", str(env / "empty")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)


def test_extra_overrides_get_their_own_run_directories(env):
    fx.main(["--jobs", "0", "--out", str(env / "a"), "--arms", "baseline", "--settings", "V1k"])
    fx.main(["--jobs", "0", "--out", str(env / "b"), "--arms", "baseline", "--settings", "V1k",
             "--set", "train.lr=1e-3"])  # fmt: skip
    assert len(starts(env)) == 6
    dirs = sorted(
        p.parent.parent.name for p in Path(os.environ["REPRO_RUNS_DIR"]).rglob("result.json")
    )
    assert dirs[0] == "baseline@V1k" and dirs[-1].startswith("baseline@V1k+")


def test_train_run_trains_the_core_preset_with_the_arm_overrides(env):
    from repro_core.experiment import RunSpec, train_run
    from repro_core.train import reset_accelerate

    run_dir = env / "runs" / "core" / "debug" / "small" / "seed1"
    spec = RunSpec("core", "small", "", 1, "debug",
                   ("model.num_hidden_layers=1", "train.max_steps=3", "seed=1"), str(run_dir))  # fmt: skip
    reset_accelerate()
    trainer, results = train_run(spec)
    reset_accelerate()
    assert trainer.cfg.model.num_hidden_layers == 1 and trainer.cfg.seed == 1
    assert trainer.cfg.name == "small" and results["step"] == 3
    assert (run_dir / "final" / "config.json").is_file()


def test_derived_records_are_judged_like_arms_and_rebuilt_by_report_only(env):
    """Grid.derive: methods analysed on the same runs become per-seed records the claims name."""
    out = env / "results"
    assert fx.main_derived(["--jobs", "0", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 3 and len(results["derived"]) == 3 * 2 * 2
    (claim,) = results["claims"]
    assert [r["setting"] for r in claim["rows"]] == ["w1", "w2"]
    assert all(r["test"] == "paired" and r["n_pairs"] == 3 for r in claim["rows"])
    assert claim["rows"][0]["diff"] == pytest.approx(-1.01)  # fast - slow, mean over seeds
    assert claim["verdict"] == "reproduced"
    assert (out / "package_plot.txt").read_text() == "12 derived records\n"
    before = (out / "results.md").read_bytes()
    (out / "results.md").unlink()
    (out / "package_plot.txt").unlink()
    assert fx.main_derived(["--report-only", "--out", str(out)]) == 0
    assert (out / "results.md").read_bytes() == before
    assert (out / "package_plot.txt").is_file()  # the package's figures are redrawn too


def test_claims_on_derived_records_are_checked_against_the_declared_names(env):
    """A typo in a derived claim fails before any run; so do undeclared derived records."""
    import dataclasses

    from repro_core.claims import Claim
    from repro_core.experiment import main as run_experiment

    out = env / "results"
    typo = (Claim("fixture", "err", "fsat", ("slow",)),)
    with pytest.raises(ValueError, match=r"unknown arm\(s\) \['fsat'\]"):
        run_experiment(fx.DERIVED_GRID, typo, ["--jobs", "0", "--out", str(out)])
    assert not out.exists()  # raised before any run
    undeclared = dataclasses.replace(fx.DERIVED_GRID, derived_arms=())
    with pytest.raises(ValueError, match="needs Grid.derived_arms"):
        run_experiment(undeclared, fx.DERIVED_CLAIMS, ["--jobs", "0", "--out", str(out)])
    partial = dataclasses.replace(fx.DERIVED_GRID, derived_arms=("fast",))
    with pytest.raises(ValueError, match=r"records \['slow'\] outside"):
        run_experiment(partial, (), ["--jobs", "0", "--out", str(out)])


def test_only_the_tiny_grid_rewrites_the_package_readme_block(env, monkeypatch):
    from repro_core import report

    root = env / "pkg"
    root.mkdir()
    readme = root / "README.md"
    text = f"# fixture\n\n{report.README_START}\nold table\n{report.README_END}\n"
    readme.write_text(text)
    monkeypatch.setattr(type(fx.GRID), "package_root", lambda self: root)
    assert fx.main(["--jobs", "0", "--preset", "spec-a4", "--seeds", "0,1,2"]) == 0
    assert (root / "results" / "spec-a4" / "results.md").is_file()
    assert readme.read_text() == text  # another preset: its own folder, README untouched
    assert fx.main(["--jobs", "0", "--preset", "tiny"]) == 0
    block = readme.read_text()
    assert "old table" not in block and "Preset `tiny`" in block
