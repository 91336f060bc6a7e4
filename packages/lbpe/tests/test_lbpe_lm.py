"""The LM side: training with an LBPE tokenizer through the core trainer (loss drops, the model
saves, reloads with its tokenizer and generates), reproduce.py's arm specs and statistics."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from repro_lbpe import reproduce
from repro_lbpe.stats import char_length, encoding_stats, long_share


def _text(n_lines: int, seed: int) -> str:
    rng = random.Random(seed)
    pre, root = (
        ["", "re", "un", "inter"],
        ["connect", "report", "nation", "press", "struct", "view"],
    )
    words = [p + r + s for p in pre for r in root for s in ("", "ing", "ed", "ions", "s", "ally")]
    return "".join(
        " ".join(rng.choices(words, k=rng.randint(4, 14))) + " .\n" for _ in range(n_lines)
    )


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "train.txt").write_text(_text(300, 0), encoding="utf-8")
    (root / "valid.txt").write_text(_text(40, 1), encoding="utf-8")
    return root


def test_training_with_lbpe_lowers_the_loss_saves_reloads_and_generates(
    corpus_dir, tmp_path, monkeypatch
):
    from repro_core.config import ModelConfig, load_config, package_preset_dirs
    from repro_core.evaluate import load_run
    from repro_core.train import Trainer, reset_accelerate

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    reset_accelerate()
    cfg = load_config(
        "debug",
        [
            f"data.corpus={corpus_dir}", "data.tokenizer=lbpe:320:tie=rank", "data.seq_len=32",
            "model.hidden_size=32", "model.intermediate_size=64", "train.max_steps=30",
            "train.batch_size=4", "train.eval_every=0", "train.log_every=1", "train.progress=false",
        ],
        ModelConfig,
        package_preset_dirs(reproduce.__file__),
    )  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    results = trainer.train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert np.isfinite(results["val_bits_per_byte"])
    reset_accelerate()
    model, tok, _ = load_run(tmp_path / "run")
    assert type(tok).__name__ == "LbpeTokenizer" and tok.tie == "rank"
    ids = tok("interconnecting reports", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 5)
    assert isinstance(tok.decode(out[0]), str)


def test_arm_tokenizer_specs_and_pseudo_overrides():
    assert reproduce.arm_tokenizer_spec("lbpe:4096", "bpe", "bpe") == "lbpe:bpe:4096:reading=bpe"
    assert (
        reproduce.arm_tokenizer_spec("lbpe:4096:pattern=gpt2-split-digits", "scaffold", "b")
        == "lbpe:scaffold:4096:reading=b:pattern=gpt2-split-digits"
    )
    own, rest = reproduce._own(["arm.vocab=bpe", "train.lr=1e-3", "arm.budget=bytes"])
    assert own == {"vocab": "bpe", "budget": "bytes"} and rest == ["train.lr=1e-3"]
    with pytest.raises(ValueError, match="needs lbpe:N"):
        reproduce.arm_tokenizer_spec("lbpe:/some/dir", "bpe", "b")


def test_length_statistics_against_hand_counts():
    tokens = [b"a", b"abc", b"abcdefg", b" \xc3\xa9t\xc3\xa9s", b"0123456789ab", b"<|endoftext|>"]
    assert [char_length(t) for t in tokens[:5]] == [1, 3, 7, 5, 12]
    ids = [[0, 1, 2, 2, 3], [4, 5]]
    stats = encoding_stats(ids, n_text_bytes=70, token_bytes=tokens, special_ids=[5])
    assert stats["tokens"] == 7 and stats["bytes_per_token"] == 10
    assert stats["share_chars"]["1-3"] == pytest.approx(2 / 6)
    assert stats["share_chars"]["4-6"] == pytest.approx(1 / 6)
    assert stats["share_chars"]["7-9"] == pytest.approx(2 / 6)
    assert stats["share_chars"]["10-12"] == pytest.approx(1 / 6)
    assert stats["share_bytes"]["7-9"] == pytest.approx(3 / 6)  # ' étés' is 7 bytes
    assert long_share(stats) == pytest.approx(3 / 6)
    p = np.array([1, 1, 2, 1, 1, 1]) / 7
    assert stats["entropy_bits"] == pytest.approx(float(-(p * np.log2(p)).sum()))


def test_checkpoints_lists_only_existing_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    assert reproduce.checkpoints("tiny") == {}
    final = tmp_path / "lbpe" / "tiny" / "lbpe" / "seed0" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    assert reproduce.checkpoints("tiny") == {"lbpe/lbpe": str(final.resolve())}
