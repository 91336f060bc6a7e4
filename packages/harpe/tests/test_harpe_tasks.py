"""Task generators, the RULER metric and sliding-window perplexity."""

import math
import random

import numpy as np
import pytest
import torch
from repro_harpe.evaluate import greedy_predictions, sliding_window_nll
from repro_harpe.tasks import (
    DEFAULT_SETTINGS,
    NOISE,
    TASKS,
    build_sample,
    make_suite,
    string_match_all,
)
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="module")
def tokenizer():
    """GPT-2's BPE (a real tokenizer other than the package's own) from the shared data."""
    import os

    folder = os.path.join(os.environ["REPRO_DATA_DIR"], "gpt2-tokenizer")
    bpe = ByteLevelBPETokenizer(
        os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    assert len(tok) == 50257
    return tok


def count_with(tok):
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("length", [128, 512])
def test_generator_fits_the_length_counted_by_the_tokenizer(tokenizer, task, length):
    count = count_with(tokenizer)
    for depth in (0.0, 0.5, 1.0):
        s = build_sample(task, length, depth, random.Random(7), count)
        assert s.length == count(s.prompt + s.target) <= length
        assert s.length > length - 40  # the haystack was filled (binary search), not left short
        for ans in s.answers:
            assert ans.lower() in s.target.lower()


@pytest.mark.parametrize("task", ["passkey", "niah_single", "vt"])
def test_needle_sits_at_the_requested_depth(tokenizer, task):
    count = count_with(tokenizer)
    for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
        s = build_sample(task, 512, depth, random.Random(3), count)
        value = s.answers[0]
        first = s.prompt.index(value)  # the needle (passkey / niah value, vt first assignment)
        before = sum(s.prompt[:first].count(sentence) for sentence in NOISE)
        assert abs(before - depth * s.units) <= 1, (depth, before, s.units)


def test_multikey_haystack_is_distractor_needles_with_other_keys(tokenizer):
    s = build_sample("niah_multikey", 512, 0.5, random.Random(2), count_with(tokenizer))
    key = s.prompt.rsplit("for ", 1)[1].split(" is:")[0]
    lines = [x for x in s.prompt.split("\n") if x.startswith("One of the special magic")]
    assert len(lines) == s.units + 1
    assert sum(f"for {key} is:" in x for x in lines) == 1


def test_suite_is_deterministic(tokenizer):
    a = make_suite(["passkey", "cwe"], [128], [0.0, 1.0], 2, count_with(tokenizer), seed=5)
    b = make_suite(["passkey", "cwe"], [128], [0.0, 1.0], 2, count_with(tokenizer), seed=5)
    assert [x.prompt for x in a] == [x.prompt for x in b] and len(a) == 4 + 4


def test_string_match_all_gives_100_for_perfect_and_50_for_half():
    refs = [["12345", "ABCD"], ["67890"]]
    assert string_match_all(["12345 abcd", " 67890"], refs) == 100.0
    assert string_match_all(["12345", "67890"], refs) == 75.0  # 1/2 and 1/1
    assert string_match_all(["nothing", "67890"], [["12345"], ["67890"]]) == 50.0


class ConstantLM(torch.nn.Module):
    """Uniform next-token distribution: perplexity must be the vocabulary size."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab) + self.weight
        return type("Out", (), {"logits": logits})()


def test_sliding_window_ppl_of_a_constant_model_is_the_vocab_size():
    ids = np.arange(700) % 50
    nll = sliding_window_nll(ConstantLM(50), ids, context=256, stride=100)
    assert math.isclose(math.exp(nll), 50.0, rel_tol=1e-6)  # fp32 log-softmax


class PositionLM(torch.nn.Module):
    """Logit of token v at position t = 0.01 * v * (t + 1) * (number of tokens seen so far)):
    the NLL of a token depends on how much context the window gave it."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        T = input_ids.shape[1]
        ctx = torch.arange(1, T + 1, dtype=torch.float)[None, :, None]
        logits = 0.01 * torch.arange(30, dtype=torch.float)[None, None, :] * ctx
        return type("Out", (), {"logits": logits.expand(input_ids.shape[0], T, 30)})()


def test_sliding_window_scores_each_token_once_with_its_window_context():
    ids = np.random.default_rng(0).integers(0, 30, 300)
    context, stride = 64, 16
    # brute force: token i (i >= 1) is scored by the window that first reaches it
    total, n, end = 0.0, 0, context
    scored = set()
    while True:
        start = end - context
        for i in range(max(start + 1, 1), end):
            if i not in scored:
                scored.add(i)
                ctx = i - start  # tokens of the window before i
                logits = 0.01 * torch.arange(30, dtype=torch.float) * ctx
                total -= float(torch.log_softmax(logits, -1)[ids[i]])
                n += 1
        if end >= len(ids):
            break
        end = min(end + stride, len(ids))
    assert scored == set(range(1, 300))
    assert math.isclose(
        sliding_window_nll(PositionLM(), ids, context, stride), total / n, rel_tol=1e-6
    )


def test_batched_greedy_predictions_equal_a_token_by_token_loop(tokenizer):
    """Left-padded batched generate == argmax decoding of each prompt alone, no cache."""
    from repro_harpe.modeling import HarpeConfig, HarpeForCausalLM

    torch.manual_seed(0)
    cfg = HarpeConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=4, rope_theta_per_head=[1e4, 1e5, 1e6, 5e6])  # fmt: skip
    model = HarpeForCausalLM(cfg).eval()
    count = count_with(tokenizer)
    samples = [build_sample("passkey", n, 0.5, random.Random(n), count) for n in (64, 100, 128)]
    preds = greedy_predictions(model, tokenizer, samples, batch_size=3)
    for s, pred in zip(samples, preds):
        ids = tokenizer(s.prompt, add_special_tokens=False)["input_ids"]
        steps = len(tokenizer(s.target, add_special_tokens=False)["input_ids"]) + 2
        out = []
        with torch.no_grad():
            for _ in range(steps):
                nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
                out.append(nxt)
        assert pred == tokenizer.decode(out)


def test_training_blocks_hold_a_task_at_the_configured_fraction(tokenizer):
    """Every task must appear at the configured share even where its fixed text is longer than
    most drawn lengths (here 39-62 GPT-2 tokens against lengths drawn in 8..80): a task that
    does not fit its drawn length takes the whole block instead of becoming prose."""
    from repro_harpe.corpus import make_block

    headers = {
        "passkey": "Find the pass key in the text.",
        "niah": "Some special magic numbers are hidden in the text.",
        "vt": "Track the variables.",
        "cwe": "most common words.",
    }
    rng, n, seq_len = random.Random(3), 400, 80
    seen = dict.fromkeys(headers, 0)
    for _ in range(n):
        ids = make_block(tokenizer, seq_len, rng, 0.5, 8, DEFAULT_SETTINGS)
        assert ids.shape == (seq_len,)
        text = tokenizer.decode(ids.tolist())
        for name, header in headers.items():
            seen[name] += header in text
    share = sum(seen.values()) / n
    assert abs(share - 0.5) < 0.1, (share, seen)  # 4 binomial sigmas; before the fix: 0.2
    assert all(seen.values()), seen
