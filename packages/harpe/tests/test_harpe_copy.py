"""The copy curriculum of the synthetic corpus: copy blocks, the phased sampler, the stage's
blocks, the induction metric and the config checks."""

import random

import numpy as np
import pytest
import torch
from repro_core.config import ConfigError, load_config, package_preset_dirs
from repro_harpe.block_trainer import PhasedSampler
from repro_harpe.config import HarpeModelConfig
from repro_harpe.corpus import copy_block, copy_ids, harpe_tokenizer, training_blocks

DIRS = package_preset_dirs(__import__("repro_harpe.train").train.__file__)


def smallest_period(x: np.ndarray) -> int:
    """Brute force: the smallest p with x[t] == x[t - p] for every t >= p."""
    return next(p for p in range(1, len(x) + 1) if all(x[t] == x[t - p] for t in range(p, len(x))))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    import os

    old = os.environ.get("REPRO_RUNS_DIR")
    os.environ["REPRO_RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    try:
        yield harpe_tokenizer("bpe:320")
    finally:
        if old is None:
            os.environ.pop("REPRO_RUNS_DIR")
        else:
            os.environ["REPRO_RUNS_DIR"] = old


def test_copy_blocks_repeat_a_random_unit_of_varying_period_without_special_tokens(tokenizer):
    ids = copy_ids(tokenizer)
    assert len(ids) == len(tokenizer) - len(set(tokenizer.all_special_ids))
    assert not set(ids.tolist()) & set(tokenizer.all_special_ids)
    rng, periods = random.Random(0), []
    for _ in range(60):
        x = copy_block(128, rng, ids, (16, 64))
        assert x.shape == (128,) and x.dtype == np.int64
        assert set(x.tolist()) <= set(ids.tolist())
        p = smallest_period(x)  # a unit of random ids may repeat by chance: then p divides it
        assert p <= 64
        periods.append(p)
    # the period varies (a fixed one teaches "copy p back" by position, not induction)
    assert len(set(periods)) >= 20 and min(periods) < 32 < max(periods)


def test_training_blocks_mix_copy_blocks_at_the_configured_share(tokenizer, monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    blocks = training_blocks(tokenizer, 128, 400, seed=5, copy_fraction=0.25)
    periodic = sum(smallest_period(b) <= 64 for b in blocks)
    assert abs(periodic / 400 - 0.25) < 0.09, periodic  # 4 binomial sigmas
    only = training_blocks(tokenizer, 128, 20, seed=5, copy_fraction=1.0)
    assert all(smallest_period(b) <= 64 for b in only)
    none = training_blocks(tokenizer, 128, 50, seed=5)
    assert not any(smallest_period(b) <= 64 for b in none)


def test_phased_sampler_draws_the_first_part_first_each_block_once():
    first, steps, total, G = 12, 3, 40, 4
    s = PhasedSampler(first, steps, total, micro=2, accum=2, world=1, seed=0)
    head = [s.indices(k, m, 0) for k in range(steps) for m in range(2)]
    assert sorted(np.concatenate(head).tolist()) == list(range(first))
    tail = np.concatenate([s.indices(k, m, 0) for k in range(steps, steps + 7) for m in range(2)])
    assert tail.min() >= first and sorted(tail.tolist()) == list(range(first, total))
    assert s.global_batch == G


def test_stage_blocks_open_with_copy_steps_of_copy_blocks_and_keep_the_budget(
    tokenizer, monkeypatch, tmp_path
):
    from repro_harpe.train import stage_blocks

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    cfg = load_config("base-debug", ["train.max_steps=10", "train.batch_size=4"],
                      HarpeModelConfig, DIRS)  # fmt: skip
    blocks, first = stage_blocks(cfg, tokenizer, copy_steps=4)
    assert first == 16 and blocks.shape == (40, 64)
    assert all(smallest_period(b) <= 64 for b in blocks[:first])
    plain, zero = stage_blocks(cfg, tokenizer, copy_steps=0)
    assert zero == 0 and plain.shape == (40, 64)
    assert np.array_equal(blocks[first:], plain[: 40 - first])  # corpus unchanged, just later


class _Oracle(torch.nn.Module):
    """Logits that put all mass on the true next token (known from the input itself)."""

    def __init__(self, vocab, shift=None):
        super().__init__()
        self.vocab, self.shift, self.w = vocab, shift, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        nxt = torch.roll(input_ids, -1, dims=1)
        if self.shift is not None:  # a wrong copy rule: the token `shift` back
            nxt = torch.roll(input_ids, self.shift - 1, dims=1)
        logits = torch.nn.functional.one_hot(nxt, self.vocab).float()
        return type("Out", (), {"logits": logits})()


def test_induction_accuracy_is_one_for_a_copier_and_near_zero_otherwise(tokenizer):
    from repro_harpe.evaluate import induction_accuracy

    V = len(tokenizer)
    assert induction_accuracy(_Oracle(V), tokenizer, period=30) == 1.0
    assert induction_accuracy(_Oracle(V, shift=17), tokenizer, period=30) < 0.05


def test_copy_switches_are_checked():
    with pytest.raises(ConfigError, match="model.copy_fraction"):
        HarpeModelConfig(copy_fraction=1.5)
    with pytest.raises(ConfigError, match="model.copy_period"):
        HarpeModelConfig(copy_period=[64, 16])
    from repro_harpe.train import check_inputs

    cfg = load_config("base-debug", ["model.copy_steps=6"], HarpeModelConfig, DIRS)
    with pytest.raises(ConfigError, match="smaller than train.max_steps"):
        check_inputs(cfg, "base-debug")
    import os

    wiki = os.path.join(os.environ["REPRO_DATA_DIR"], "wikitext-2")
    cfg = load_config("base-debug", ["model.copy_steps=2", f"data.corpus={wiki}"],
                      HarpeModelConfig, DIRS)  # fmt: skip
    with pytest.raises(ConfigError, match="synthetic corpus only"):
        check_inputs(cfg, "base-debug")
