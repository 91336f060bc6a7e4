"""A grid whose runs need no training, for the tests of repro_core.experiment.

Each run appends ``start <arm> <setting> <seed>`` to ``$GRID_LOG`` and sleeps ``$GRID_SLEEP``
seconds, so a test can count the runs a grid starts and kill it half way.
"""

import os
import time
from pathlib import Path

from repro_core.claims import Claim
from repro_core.experiment import Arm, Grid, Metric, RunSpec
from repro_core.experiment import main as run_experiment

BASE = {"baseline": 3.0, "method": 2.5, "same": 3.0}


def fake_run(spec: RunSpec) -> dict:
    log = os.environ.get("GRID_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"start {spec.arm} {spec.setting} {spec.seed}\n")
    pids = os.environ.get("GRID_PIDS")
    if pids:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("GRID_SLEEP", "0")))
    scale = 2.0 if "data.vocab_size=2048" in spec.overrides else 1.0
    seed_effect = 0.1 * ((spec.seed * 7919) % 5 - 2)
    loss = scale * BASE[spec.arm] + seed_effect + 0.001 * spec.seed * (spec.arm == "method")
    Path(spec.run_dir, "marker.txt").write_text("made by fake_run\n")
    return {"val_loss": loss, "nested": {"acc": 1.0 / loss}, "note": "synthetic"}


GRID = Grid(
    package="fixture",
    arms=(Arm("baseline", ("model.x=1",)), Arm("method", ("model.x=2",)), Arm("same")),
    run=fake_run,
    seeds=(0, 1, 2),
    settings={"V1k": ("data.vocab_size=1024",), "V2k": ("data.vocab_size=2048",)},
    metrics=(Metric("val_loss", "val loss", True, 3), Metric("nested.acc", "acc", False, 3)),
    title="Fixture grid",
)
CLAIMS = (
    Claim('"method is better" (fixture)', "val_loss", "method", "baseline"),
    Claim(
        '"same matches baseline" (fixture)',
        "val_loss",
        "same",
        "baseline",
        kind="matches",
        margin=0.01,
    ),  # fmt: skip
)


def main(argv=None) -> int:
    return run_experiment(GRID, CLAIMS, argv)


# "Train once, analyse many": two analysis methods scored on every run of one arm, at two
# analysis windows; Grid.derive turns them into per-seed records that the claims name like arms.
def analysed_run(spec: RunSpec) -> dict:
    noise = 0.01 * spec.seed
    return {"err": {w: {"fast": 1.0 + noise, "slow": 2.0 + 2 * noise} for w in ("w1", "w2")}}


def derive_methods(results: dict) -> list[dict]:
    return [
        {"arm": method, "setting": w, "seed": r["seed"], "metrics": {"err": err[method]}}
        for r in results["runs"]
        for w, err in r["metrics"]["err"].items()
        for method in err
    ]


def draw(results: dict, out: Path) -> list[str]:
    (out / "package_plot.txt").write_text(f"{len(results['derived'])} derived records\n")
    return ["package_plot.txt"]


DERIVED_GRID = Grid(
    package="fixture_derived",
    arms=(Arm("run"),),
    run=analysed_run,
    derive=derive_methods,
    derived_arms=("fast", "slow"),
    title="Fixture grid with derived records",
)
DERIVED_CLAIMS = (
    Claim('"fast beats slow" (fixture)', "err", "fast", ("slow",), settings=("w1", "w2")),
)


def main_derived(argv=None) -> int:
    return run_experiment(DERIVED_GRID, DERIVED_CLAIMS, argv, plots=draw)
