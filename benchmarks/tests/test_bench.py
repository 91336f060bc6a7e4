"""repro-bench end to end on a tiny model (offline), its errors, and the task folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("lm_eval")

from repro_benchmarks import run, tasks_dir  # noqa: E402

DATA = os.environ.get("REPRO_DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA or not Path(DATA, "copa", "copa.jsonl").is_file(),
    reason="needs REPRO_DATA_DIR (../shared/data)",
)


@pytest.fixture(autouse=True)
def _offline_single_thread(tmp_path, monkeypatch):
    """No hub access, a private datasets cache, one torch thread (tiny models, busy machine)."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random DecoderLM saved with a 300-token BPE tokenizer beside it (like a run's final/)."""
    from repro_core import DecoderConfig, DecoderLM
    from repro_core.data import train_bpe_tokenizer

    if not DATA:
        pytest.skip("needs REPRO_DATA_DIR")
    out = tmp_path_factory.mktemp("final")
    text = Path(DATA, "wikitext-2", "valid.txt").read_text(encoding="utf-8")[:50_000]
    tokenizer = train_bpe_tokenizer(text.split("\n"), 300, out)
    torch.manual_seed(0)
    config = DecoderConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    DecoderLM(config).save_pretrained(out)
    return out


def fake_package(monkeypatch, slug: str, checkpoints, **more) -> None:
    """Register packages as if their pyproject declared a repro.bench entry point; a value that is
    an exception makes that package's hook fail to import."""

    def entry_point(name, found):
        def load():
            if isinstance(found, Exception):
                raise found
            return lambda: found

        value = f"repro_{name}.reproduce:checkpoints"
        return SimpleNamespace(name=name, module="repro_core", value=value, load=load)

    packages = {slug: checkpoints, **more}
    eps = {name: entry_point(name, found) for name, found in packages.items()}
    monkeypatch.setattr(run, "registered_packages", lambda: eps)


@torch.no_grad()
def copa_accuracy_by_hand(model_dir: Path, limit: int) -> float:
    """COPA accuracy of the first ``limit`` documents, scored with direct forward passes: each
    choice's continuation " " + choice after the query, summed log-probabilities of its tokens
    (tokens of query + continuation after those of the query, no special tokens), argmax."""
    from repro_core import DecoderLM
    from transformers import AutoTokenizer

    model = DecoderLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    docs = [json.loads(line) for line in Path(DATA, "copa", "copa.jsonl").open()][:limit]
    correct = 0
    for doc in docs:
        scores = []
        for choice in doc["choices"]:
            context = tokenizer.encode(doc["query"], add_special_tokens=False)
            whole = tokenizer.encode(doc["query"] + " " + choice, add_special_tokens=False)
            assert whole[: len(context)] == context and len(whole) <= 64
            logprobs = model(input_ids=torch.tensor([whole])).logits[0].log_softmax(-1)
            scores.append(
                sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context), len(whole)))
            )
        correct += int(max(range(len(scores)), key=scores.__getitem__) == doc["gold"])
    return correct / len(docs)


@needs_data
def test_model_dir_runs_a_multiple_choice_task_end_to_end(model_dir, tmp_path):
    out = tmp_path / "results"
    rc = run.main(
        [
            "--model",
            str(model_dir),
            "--tasks",
            "copa_local",
            "--limit",
            "4",
            "--batch-size",
            "8",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads((out / "results.json").read_text())
    (row,) = report["rows"]
    assert (row["package"], row["variant"]) == (run.MODEL_ROW, str(model_dir))
    copa = row["tasks"]["copa_local"]
    assert (copa["documents"], copa["documents_total"]) == (4, 100)
    assert copa["metrics"]["acc"] == copa_accuracy_by_hand(model_dir, limit=4)
    table = (out / "results.md").read_text()
    assert "| package | variant | checkpoint (run commit, weights sha256) | copa acc |" in table
    assert "(n=4)" in table and f"`unknown`, `{row['checkpoint']['sha256'][:12]}`" in table
    assert row["checkpoint"]["path"] == str(model_dir.resolve())


@needs_data
def test_package_hook_rows_and_same_day_merge(model_dir, tmp_path, monkeypatch):
    fake_package(monkeypatch, "toy", {"dense": str(model_dir)})
    out = tmp_path / "results"
    assert run.main(["--tasks", "copa_local", "--limit", "2", "--out", str(out)]) == 0
    assert (
        run.main(["--packages", "toy", "--tasks", "boolq_local", "--limit", "2", "--out", str(out)])
        == 0
    )
    report = json.loads((out / "results.json").read_text())
    (row,) = report["rows"]
    assert (row["package"], row["variant"]) == ("toy", "dense")
    assert set(row["tasks"]) == {"copa_local", "boolq_local"}  # the second run added a column
    assert len(report["runs"]) == 2


def _error(capsys, argv) -> str:
    assert run.main(argv) == 2
    return capsys.readouterr().err


def test_bad_task_name_lists_the_local_tasks(capsys, tmp_path):
    err = _error(capsys, ["--model", str(tmp_path), "--tasks", "piqa_lcoal"])
    assert "piqa_lcoal" in err and "piqa_local" in err and "wikitext2_local" in err


def test_missing_data_file_says_what_and_where_from(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    err = _error(capsys, ["--model", str(tmp_path), "--tasks", "piqa_local"])
    assert str(tmp_path / "piqa" / "piqa.jsonl") in err and "SOURCE.md" in err
    monkeypatch.delenv("REPRO_DATA_DIR")
    err = _error(capsys, ["--model", str(tmp_path), "--tasks", "piqa_local"])
    assert "REPRO_DATA_DIR is not set" in err


@needs_data
def test_missing_checkpoint_says_how_to_produce_it(capsys, tmp_path, monkeypatch):
    err = _error(capsys, ["--model", str(tmp_path / "runs" / "final"), "--tasks", "copa_local"])
    assert "make quickstart" in err
    fake_package(monkeypatch, "toy", {"dense": str(tmp_path / "gone")})
    err = _error(capsys, ["--packages", "toy", "--tasks", "copa_local"])
    assert "variant dense" in err and "make reproduce-toy" in err
    fake_package(monkeypatch, "toy", {})
    assert "make reproduce-toy" in _error(capsys, ["--packages", "toy", "--tasks", "copa_local"])
    assert "registered: ['toy']" in _error(capsys, ["--packages", "nope", "--tasks", "copa_local"])
    assert "nothing to evaluate" in _error(capsys, ["--tasks", "copa_local"])


def test_every_default_task_has_a_yaml_and_its_data():
    local = run.local_tasks(tasks_dir())
    assert set(run.DEFAULT_TASKS) <= set(local)
    assert set(run.TABLE_METRICS) == set(run.DEFAULT_TASKS)
    if DATA:
        run.check_task_data(run.DEFAULT_TASKS)  # raises BenchError naming a missing file


def test_merge_keeps_other_rows_and_updates_tasks():
    old = [
        {"package": "a", "variant": "x", "tasks": {"t1": 1}},
        {"package": "b", "variant": "y", "tasks": {"t1": 2}},
    ]
    new = [{"package": "a", "variant": "x", "tasks": {"t2": 3}, "seconds": 1.0}]
    merged = {(r["package"], r["variant"]): r for r in run.merge_rows(old, new)}
    assert merged["a", "x"]["tasks"] == {"t1": 1, "t2": 3} and merged["a", "x"]["seconds"] == 1.0
    assert merged["b", "y"]["tasks"] == {"t1": 2}


def test_merge_replaces_a_row_measured_on_another_checkpoint():
    old = [{"package": "a", "variant": "x", "tasks": {"t1": 1}, "checkpoint": {"sha256": "old"}}]
    new = [{"package": "a", "variant": "x", "tasks": {"t2": 3}, "checkpoint": {"sha256": "new"}}]
    (row,) = run.merge_rows(old, new)
    assert row["tasks"] == {"t2": 3} and row["checkpoint"] == {"sha256": "new"}


def fake_checkpoint(directory: Path, weights: bytes, commit: str | None = None) -> Path:
    """A model directory as a run's final/ (config + weights), with the run's meta.json."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "repro_decoder"}')
    (directory / "model.safetensors").write_bytes(weights)
    if commit:
        (directory.parent / "meta.json").write_text(json.dumps({"git_commit": commit}))
    return directory


def test_a_row_records_the_commit_and_the_weights_of_its_checkpoint(tmp_path):
    import hashlib

    final = fake_checkpoint(tmp_path / "run" / "final", b"\x01\x02", commit="abc123")
    record = run.checkpoint_record(final)
    expected = hashlib.sha256(
        b"config.json\0" + (final / "config.json").read_bytes() + b"model.safetensors\0\x01\x02"
    ).hexdigest()
    assert record == {"path": str(final.resolve()), "sha256": expected, "commit": "abc123"}
    bare = fake_checkpoint(tmp_path / "bare", b"\x01")
    assert run.checkpoint_record(bare)["commit"] is None  # no run metadata: said, not guessed


def test_rows_of_gone_retrained_or_unrecorded_checkpoints_are_dropped(tmp_path, capsys):
    keep = fake_checkpoint(tmp_path / "keep" / "final", b"same", commit="c1")
    retrained = fake_checkpoint(tmp_path / "retrained" / "final", b"before", commit="c1")
    gone = fake_checkpoint(tmp_path / "gone" / "final", b"x", commit="c1")
    rows = [
        {"package": "p", "variant": v, "tasks": {}, "checkpoint": run.checkpoint_record(d)}
        for v, d in (("keep", keep), ("retrained", retrained), ("gone", gone))
    ]
    rows.append({"package": "p", "variant": "old-format", "tasks": {}, "model_dir": str(keep)})
    out = tmp_path / "results"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"rows": rows, "runs": []}))
    (retrained / "model.safetensors").write_bytes(b"after")
    for path in gone.iterdir():
        path.unlink()
    gone.rmdir()
    report = run.write_report(out, [])
    assert [r["variant"] for r in report["rows"]] == ["keep"]
    err = capsys.readouterr().err
    assert "retrained" in err and "no longer exists" in err and "records no checkpoint" in err
    table = (out / "results.md").read_text()
    assert "| p | keep | `c1`, " in table and "retrained" not in table.split("| --- |")[-1]


def test_committed_lm_eval_rows_record_their_checkpoint_and_commit():
    """Every committed lm-eval table row says which checkpoint and commit it came from."""
    from repro_benchmarks import results_dir

    for path in sorted(results_dir().glob("*/results.json")):
        for row in json.loads(path.read_text())["rows"]:
            ckpt = row.get("checkpoint") or {}
            assert ckpt.get("sha256") and "commit" in ckpt, (path, row["package"], row["variant"])
            assert row.get("bench_commit") is not None, (path, row["variant"])


@needs_data
def test_a_broken_package_hook_is_skipped_unless_named(model_dir, tmp_path, monkeypatch, capsys):
    broken = ModuleNotFoundError("No module named 'repro_broken.reproduce'")
    fake_package(monkeypatch, "toy", {"dense": str(model_dir)}, broken=broken)
    out = tmp_path / "results"
    assert run.main(["--tasks", "copa_local", "--limit", "1", "--out", str(out)]) == 0
    assert "skipping package broken" in capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["package"], r["variant"]) for r in rows] == [("toy", "dense")]
    err = _error(capsys, ["--packages", "broken", "--tasks", "copa_local"])
    assert "repro_broken.reproduce" in err
