"""Command lines: one-line user errors before torch, the data folder rule, the offline fail-fast,
and the run-directory guard (no torch in this file's own process work)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from repro_core.config import MissingInputError, UserError
from repro_core.data import data_dir, resolve_corpus, workspace_root
from repro_core.rundir import RunDirExistsError, check_run_dir, clear_run


def test_user_errors_are_one_line_with_status_2_before_torch_is_imported(tmp_path):
    """Each bad command line: status 2, one stderr line 'error: ...', no torch/transformers."""
    cases = {
        "--set train.lr=-1": "error: train.lr=-1.0 is invalid: allowed a positive number",
        "--set train.bogus=1": "error: unknown config key(s) ['train.bogus']",
        "--preset nope": "error: preset 'nope' not found; available presets:",
        "--set data.corpus=/no/such.txt": "error: corpus '/no/such.txt' not found",
        "--set model.init_from=/no/base": "error: model.init_from='/no/base' is not a model dir",
        "--seed x": "error: argument --seed: invalid int value: 'x'",
        "--resume --overwrite": "error: --resume and --overwrite exclude each other",
    }
    code = (
        "import contextlib, io, sys\n"
        "from repro_core.cli import eval_main, train_main\n"
        f"cases = {list(cases)!r}\n"
        "for args in cases:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        f"        rc = train_main(args.split() + ['--run-dir', {str(tmp_path / 'r')!r}])\n"
        "    print(rc, repr(err.getvalue()))\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        f"    rc = eval_main(['--run', {str(tmp_path)!r}])\n"
        "print(rc, repr(err.getvalue()))\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "[]", "a heavy library was imported before the checks"
    for (args, expected), line in zip(cases.items(), lines, strict=False):
        rc, err = line.split(" ", 1)
        err = eval(err)  # noqa: S307 - repr of a str printed above
        assert rc == "2" and err.count("\n") == 1 and err.startswith(expected), (args, err)
    rc, err = lines[len(cases)].split(" ", 1)
    assert rc == "2" and "is not a run directory (no config.yaml)" in eval(err)  # noqa: S307


def test_data_dir_env_then_the_folder_beside_the_repository(tmp_path, monkeypatch):
    repo, data = tmp_path / "repo", tmp_path / "shared" / "data"
    (repo / "sub").mkdir(parents=True)
    data.mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[tool.uv.workspace]\nmembers = []\n")
    monkeypatch.chdir(repo / "sub")
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    assert workspace_root() == repo
    assert data_dir() == data
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "missing"))
    assert data_dir() is None  # an explicit setting is never replaced by a guess


@pytest.mark.parametrize("offline_flag", [True, False])
def test_offline_hub_and_no_local_copy_fail_fast_with_one_message(monkeypatch, offline_flag):
    monkeypatch.setenv("REPRO_DATA_DIR", "/no/such/folder")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    if offline_flag:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # no HF_HUB_OFFLINE, but nothing listens at the endpoint
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(proxy, raising=False)
    start = time.perf_counter()
    with pytest.raises(MissingInputError) as info:
        resolve_corpus("wikitext-2")
    assert time.perf_counter() - start < 5
    assert str(info.value).startswith(
        "corpus 'wikitext-2': no local copy at REPRO_DATA_DIR=/no/such/folder and the hub is "
        "offline. Set REPRO_DATA_DIR to a folder containing wikitext-2/"
    )
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, UserError)
    with pytest.raises(MissingInputError, match="the hub is offline"):
        resolve_corpus("someone/some-dataset")


def test_run_dir_guard_names_resume_and_overwrite_and_overwrite_keeps_other_files(tmp_path):
    check_run_dir(tmp_path / "new")  # nothing there: fine
    (tmp_path / "checkpoints").mkdir()
    check_run_dir(tmp_path)  # an empty checkpoints/ folder holds nothing to lose
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunDirExistsError, match="partial run .*--resume.*--overwrite"):
        check_run_dir(tmp_path)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(RunDirExistsError, match="finished run"):
        check_run_dir(tmp_path)
    check_run_dir(tmp_path, resume=True)
    check_run_dir(tmp_path, overwrite=True)
    with pytest.raises(UserError, match="exclude each other"):
        check_run_dir(tmp_path, resume=True, overwrite=True)
    (tmp_path / "notes.txt").write_text("mine")
    assert clear_run(tmp_path) == ["metrics.jsonl", "results.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_no_grad_imports_torch_only_when_the_function_runs_and_disables_grad():
    """``repro_core.no_grad`` at module level leaves torch unimported; the call runs without grad
    and restores the grad mode afterwards."""
    code = (
        "import sys\n"
        "from repro_core import no_grad\n"
        "@no_grad\n"
        "def f(x):\n"
        "    import torch\n"
        "    return torch.is_grad_enabled(), (x * 2).requires_grad\n"
        "print('torch' in sys.modules)\n"
        "import torch\n"
        "x = torch.ones(2, requires_grad=True)\n"
        "print(f(x), torch.is_grad_enabled(), f.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["False", "(False, False) True f"]
