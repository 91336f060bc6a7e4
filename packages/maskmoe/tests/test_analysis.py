"""The reproduction's measurements against brute-force loops."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from repro_maskmoe.analysis import (
    BUCKETS,
    evaluate_routing,
    load_entropy,
    routing_fluctuation,
    routing_snapshot,
)
from repro_maskmoe.bench import perf_cases
from repro_maskmoe.modeling import MaskMoEConfig, MaskMoEForCausalLM

VOCAB = 30


def tiny_model(routing="maskmoe"):
    torch.manual_seed(0)
    config = MaskMoEConfig(
        routing=routing, vocab_size=VOCAB, hidden_size=16, intermediate_size=16,
        num_hidden_layers=2, num_attention_heads=2, num_experts=4, moe_layer_interval=1,
        frequent_experts=3, frequency_threshold=0.3, initializer_range=0.3,
    )  # fmt: skip
    model = MaskMoEForCausalLM(config)
    model.set_token_counts([int(1000 / (i + 1)) for i in range(VOCAB)])
    return model


def test_routing_fluctuation_matches_a_loop_over_pairs_layers_and_occurrences():
    rng = np.random.default_rng(0)
    snaps = [rng.integers(0, 4, size=(2, 12)) for _ in range(4)]
    ids = rng.integers(0, 6, size=12)
    buckets = np.array([0, 0, 1, 1, 2, 2])
    got = routing_fluctuation(snaps, ids, buckets)
    for b, name in enumerate(BUCKETS):
        changes, total = 0, 0
        for a, c in zip(snaps[:-1], snaps[1:]):
            for layer in range(2):
                for t in range(12):
                    if buckets[ids[t]] == b:
                        changes += int(a[layer, t] != c[layer, t])
                        total += 1
        assert math.isclose(got[name], changes / total)
    assert math.isnan(routing_fluctuation(snaps[:1], ids, buckets)["all"])


def test_load_entropy_is_one_when_balanced_and_zero_when_collapsed():
    assert load_entropy(np.array([5, 5, 5, 5])) == 1.0
    assert load_entropy(np.array([0, 9, 0, 0])) == 0.0
    p = np.array([1, 3]) / 4
    assert math.isclose(load_entropy(np.array([1, 3])), -(p * np.log(p)).sum() / math.log(2))


def test_bucketed_loss_matches_per_position_cross_entropy():
    model = tiny_model()
    blocks = np.random.default_rng(1).integers(0, VOCAB, size=(5, 9))
    buckets = np.arange(VOCAB) % 3
    ev = evaluate_routing(model, blocks, buckets, batch_size=2)
    sums, counts = np.zeros(3), np.zeros(3)
    with torch.no_grad():
        for block in blocks:  # one block, one position at a time
            x = torch.tensor(block)[None]
            logits = model(input_ids=x).logits[0]
            for s in range(len(block) - 1):
                loss = F.cross_entropy(logits[s][None], x[0, s + 1][None]).item()
                sums[buckets[block[s]]] += loss
                counts[buckets[block[s]]] += 1
    for i, name in enumerate(BUCKETS):
        assert math.isclose(ev[f"loss_{name}"], sums[i] / counts[i], rel_tol=1e-5)
        assert ev[f"tokens_{name}"] == counts[i]
    assert math.isclose(ev["loss"], sums.sum() / counts.sum(), rel_tol=1e-5)
    assert sum(sum(layer) for layer in ev["tokens_per_expert"]) == 2 * blocks.size


def test_rare_inputs_never_change_expert_under_maskmoe_but_do_under_smoe():
    blocks = np.random.default_rng(2).integers(0, VOCAB, size=(4, 10))
    ids = blocks.reshape(-1)
    for routing in ("maskmoe", "smoe"):
        model = tiny_model(routing)
        rare = ~model.frequent_tokens.numpy()
        snaps = []
        for _ in range(3):  # "training": the routers move between snapshots
            snaps.append(routing_snapshot(model, blocks))
            for layer in model.moe_layers():
                with torch.no_grad():
                    layer.moe.router.weight.normal_(std=1.0)
        fl = routing_fluctuation(snaps, ids, rare.astype(np.int64) * 2)  # bucket 2 = rare
        if routing == "maskmoe":
            assert fl["rare"] == 0.0 and fl["frequent"] > 0
        else:
            assert fl["rare"] > 0


def test_perf_case_runs_both_layers():
    (case,) = perf_cases(quick=True)
    case["candidate"][1]()
    case["baseline"][1]()
    assert case["work"] == 64
