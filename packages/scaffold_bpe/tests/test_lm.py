"""The LM side: tokenizer specs, the train entry point on the debug preset, reproduce.py's statistics
and report, the bench hooks."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from repro_core.train import reset_accelerate
from repro_scaffold_bpe import reproduce
from repro_scaffold_bpe.cli import main as cli_main
from repro_scaffold_bpe.hf_tokenizer import ScaffoldBpeTokenizer
from repro_scaffold_bpe.train import main as lm_main
from repro_scaffold_bpe.train import parse_spec, resolve_tokenizer, train_tokenizer_model


def _text(n_lines: int = 400, seed: int = 0) -> str:
    """Seeded pseudo-English with composed words (Arizona / zona-style scaffold candidates)."""
    rng = random.Random(seed)
    pre, root = ["", "re", "un", "inter", "dis"], ["connect", "report", "zona", "ari", "form"]
    root += ["nation", "press", "act", "struct", "port", "view", "cal", "ifor", "nia", "dat"]
    suf = ["", "ing", "ed", "ion", "ions", "s", "al", "ally", "n", "ans"]
    words = [p + r + x for p in pre for r in root for x in suf]
    weights = [1 / (i + 1) for i in range(len(words))]
    lines = []
    for _ in range(n_lines):
        k = rng.randint(4, 16)
        lines.append(" ".join(rng.choices(words, weights, k=k)) + f" {rng.randint(0, 2024)} .\n")
    return "".join(lines)


TEXT = _text()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "train.txt").write_text(TEXT, encoding="utf-8")
    (root / "valid.txt").write_text(_text(60, seed=1), encoding="utf-8")
    return root


def test_parse_spec():
    assert parse_spec("scaffold:4096") == ("scaffold", 4096, "gpt2")
    assert parse_spec("plain-bpe:512:gpt2-split-digits") == ("plain-bpe", 512, "gpt2-split-digits")
    assert parse_spec("bpe:8192") is None and parse_spec("/some/dir") is None
    for bad in ("scaffold:100", "scaffold:x", "plain-bpe:512:nope"):
        with pytest.raises(ValueError, match="data.tokenizer"):
            parse_spec(bad)


def test_resolve_tokenizer_trains_caches_and_matches_the_algorithm(corpus_dir):
    from repro_core.data import resolve_corpus

    corpus = resolve_corpus(str(corpus_dir))
    sbpe = resolve_tokenizer("scaffold:300", corpus)
    bpe = resolve_tokenizer("plain-bpe:300", corpus)
    assert isinstance(sbpe, ScaffoldBpeTokenizer) and len(sbpe) == len(bpe) == 300
    assert sbpe.model.scaffold_ids and not bpe.model.scaffold_ids
    model = train_tokenizer_model(TEXT.splitlines(keepends=True), "scaffold", 300)
    assert sbpe.model.merges == model.merges and sbpe.model.scaffold_ids == model.scaffold_ids
    again = resolve_tokenizer("scaffold:300", corpus)  # from the cache
    assert again.model.merges == sbpe.model.merges
    text = "zona Arizonan reinterpretations"
    assert sbpe.decode(sbpe(text)["input_ids"]) == text


def test_lm_train_rejects_a_bad_tokenizer_spec(tmp_path, capsys):
    argv = [
        "--preset",
        "debug",
        "--run-dir",
        str(tmp_path / "r"),
        "--set",
        "data.tokenizer=scaffold:9",
    ]
    assert lm_main(argv) == 2
    assert "data.tokenizer" in capsys.readouterr().err


def test_cli_hands_lm_command_lines_to_the_lm_trainer(capsys):
    assert cli_main(["--preset", "debug", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "scaffold:512" in out and "tinyshakespeare" in out
    with pytest.raises(SystemExit):  # a tokenizer command line still needs --input/--out
        cli_main(["--vocab-size", "300"])


def test_debug_preset_trains_end_to_end_and_final_reloads(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reset_accelerate()
    run = tmp_path / "run"
    argv = ["--preset", "debug", "--run-dir", str(run), "--set", "train.max_steps=6"]
    argv += ["--set", "train.progress=false", "--set", "train.eval_every=0"]
    argv += ["--set", "train.log_every=1"]
    assert cli_main(argv) == 0  # = repro-scaffold-bpe-train --preset debug (root install test)
    reset_accelerate()
    results = json.loads((run / "results.json").read_text())
    assert math.isfinite(results["val_bits_per_byte"])
    losses = [
        json.loads(line)["lm_loss"] for line in open(run / "metrics.jsonl") if "lm_loss" in line
    ]
    assert losses[-1] < losses[0]  # a few steps lower the loss
    tok = AutoTokenizer.from_pretrained(run / "final")
    assert isinstance(tok, ScaffoldBpeTokenizer) and len(tok) == 512 and tok.model.scaffold_ids
    model = AutoModelForCausalLM.from_pretrained(run / "final")
    assert model.config.vocab_size == 512
    ids = tok("ROMEO: Arizona", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape == (1, ids.shape[1], 512)
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4
    assert isinstance(tok.decode(out[0]), str)


def test_entropy_bits_of_a_uniform_distribution():
    from repro_scaffold_bpe.stats import entropy_bits

    assert entropy_bits(np.array([5, 5, 5, 5, 0])) == pytest.approx(2.0)
    assert entropy_bits(np.array([7, 0, 0])) == 0.0


def test_tokenizer_measurement_of_both_methods(corpus_dir):
    from repro_core.data import resolve_corpus
    from repro_scaffold_bpe.stats import measure

    corpus = resolve_corpus(str(corpus_dir))
    b = measure(corpus, 320, seed=0, method="bpe")
    s = measure(corpus, 320, seed=0, method="scaffold")
    assert b["vocab_size"] == s["vocab_size"] == 320 and b["scaffold_fraction"] == 0
    assert s["expanded_vocab_size"] == 320 + round(s["scaffold_fraction"] * 320) > 320
    assert s["redundancy"] == pytest.approx(1 - s["entropy_bits"] / math.log2(320))
    # plain BPE replaces nothing (the constant baseline); Scaffold-BPE replaces its scaffolds
    assert b["replacement_frequency_gain"] == 0.0 and s["num_replaced"] > 0
    # the seed is the 90% sample of training lines: another sample gives another tokenizer
    assert measure(corpus, 320, seed=1, method="bpe")["entropy_bits"] != b["entropy_bits"]


def test_checkpoints_hook_finds_seed0_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    final = tmp_path / "scaffold_bpe" / "tiny" / "lm-scaffold@4096" / "seed0" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    found = reproduce.checkpoints()
    assert found["scaffold_bpe/scaffold"] == str(final.resolve())


def test_perf_cases_quick_run():
    from repro_scaffold_bpe.bench import perf_cases

    cases = perf_cases(quick=True)
    assert len(cases) == 4
    for case in cases:
        assert case["unit"] == "bytes" and case["work"] > 0
        for _label, fn in (case["candidate"], case["baseline"]):
            fn()
