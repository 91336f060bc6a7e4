"""Parity with the official UniAttn code (Bostoncake/UniAttn @ 79a24cc) through its fixtures.

The fixture folder (``../shared/data/reference/uniattn``; another one through
``UNIATTN_FIXTURE_DIR``) holds a tiny random Llama, inputs, compensation weights and logits
computed by the official implementation. Grouping, layer count and compensation layers are read
from the folder, so any fixture of the same format is checked the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from repro_core.layers import ForwardState
from repro_core.modeling import DecoderLM, decoder_config_from_llama
from repro_uniattn import kv_cache_bytes
from repro_uniattn.convert import convert_state_dict
from repro_uniattn.modeling import dense_probs
from transformers.cache_utils import DynamicCache

ATOL = 1e-5


def fixture_dir() -> Path:
    env = os.environ.get("UNIATTN_FIXTURE_DIR")
    if env:
        return Path(env)
    data = Path(os.environ.get("REPRO_DATA_DIR") or Path(__file__).parents[4] / "shared" / "data")
    return data / "reference" / "uniattn"


@pytest.fixture(scope="module")
def fx():
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    d = fixture_dir()
    if not (d / "expected.safetensors").is_file():
        pytest.skip(f"no UniAttn fixture in {d}")
    meta = json.loads((d / "config.json").read_text())["uniattn"]["official_config_attributes"]
    comp = load_file(d / "compensation.safetensors")
    by_kind: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in comp.items():
        kind, _, layer, *_ = key.split(".")  # "<kind>.layers.<l>.compensation.weight"
        by_kind.setdefault(kind, {})[int(layer)] = value
    return {
        "config": decoder_config_from_llama(LlamaConfig.from_json_file(d / "config.json")),
        "state": load_file(d / "base_model.safetensors"),
        "ids": load_file(d / "inputs.safetensors")["input_ids"],
        "expected": load_file(d / "expected.safetensors"),
        "grouping": (
            meta["grouping_idx"],
            meta["grouping_begin_idx"],
            meta["grouping_end_idx"],
        ),
        "compensation": by_kind,
    }


def unified(fx, kind: str, block_size: int = 0):
    model = convert_state_dict(fx["config"], fx["state"], *fx["grouping"])
    for layer in model.model.layers:  # 0 = one T x S softmax block, else blocked (same result)
        layer.self_attn.block_size = block_size
    weights = fx["compensation"][kind]
    reusing = model.config.reusing_layers()
    assert sorted(weights) == sorted(reusing), "fixture compensation layers != reusing layers"
    with torch.no_grad():
        for layer, w in weights.items():
            model.model.layers[layer].self_attn.compensation.weight.copy_(w)
    return model.eval()


def max_diff(a, b) -> float:
    return float((a - b).abs().max())


@torch.no_grad()
def test_base_model_matches_hf_logits(fx):
    base = DecoderLM(fx["config"])
    base.load_state_dict(fx["state"], strict=True)
    out = base.eval()(fx["ids"]).logits
    assert max_diff(out, fx["expected"]["base_logits"]) < ATOL


@torch.no_grad()
def test_zero_compensation_matches_official(fx):
    out = unified(fx, "zero")(fx["ids"]).logits
    assert max_diff(out, fx["expected"]["uniattn_zero_comp_logits"]) < ATOL


@pytest.mark.parametrize("block_size", [0, 5])
@torch.no_grad()
def test_random_compensation_matches_official(fx, block_size):
    out = unified(fx, "random", block_size)(fx["ids"]).logits
    assert max_diff(out, fx["expected"]["uniattn_random_comp_logits"]) < ATOL


@pytest.mark.parametrize("block_size", [0, 5])
@torch.no_grad()
def test_cached_incremental_decoding_matches_official(fx, block_size):
    """Prefill 2/3 of the sequence, then one token per call, as the fixture was produced."""
    model, ids = unified(fx, "random", block_size), fx["ids"]
    prefill = 16 if ids.shape[1] == 24 else (2 * ids.shape[1]) // 3
    cache = DynamicCache()
    logits = [model(ids[:, :prefill], cache=cache, use_cache=True).logits]
    for t in range(prefill, ids.shape[1]):
        logits.append(model(ids[:, t : t + 1], cache=cache, use_cache=True).logits)
    expected = fx["expected"]["uniattn_random_comp_incremental_logits"]
    assert max_diff(torch.cat(logits, 1), expected) < ATOL
    # reusing layers cache V only: 2 L - N tensors instead of 2 L
    cfg = model.config
    per_tensor = ids.numel() * cfg.num_key_value_heads * cfg.head_dim * 4
    expected_bytes = (2 * cfg.num_hidden_layers - len(cfg.reusing_layers())) * per_tensor
    assert kv_cache_bytes(cache) == expected_bytes


@torch.no_grad()
def test_root_probabilities_and_hidden_states_match_official(fx):
    model, ids = unified(fx, "random"), fx["ids"]
    inputs = []
    hooks = [
        layer.register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
        for layer in model.model.layers
    ]
    state = ForwardState(input_ids=ids)
    final, _, _ = model.model(input_ids=ids, state=state)
    for h in hooks:
        h.remove()
    hidden = torch.stack([*inputs, final])
    assert max_diff(hidden, fx["expected"]["uniattn_random_comp_hidden_states"]) < ATOL
    for root in {r for r in model.config.reusing_layers().values()}:
        key = f"uniattn_random_comp_attn_probs.layers.{root}"
        probs = dense_probs(state.shared[f"uniattn_probs_{root}"], model.config.num_attention_heads)
        assert max_diff(probs, fx["expected"][key]) < 1e-6


def test_reusing_layers_have_no_query_or_key_projection(fx):
    model = unified(fx, "zero")
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        reusing = i in model.config.reusing_layers()
        assert hasattr(attn, "q_proj") != reusing and hasattr(attn, "k_proj") != reusing
        assert (attn.compensation is not None) == reusing
    assert all("q_proj" in k or "k_proj" in k for k in model.dropped_keys)
    assert len(model.dropped_keys) == 2 * len(model.config.reusing_layers())
