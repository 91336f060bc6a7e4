"""Conversion from HF Llama / the core decoder, parameter accounting, save/load, generate()."""

import json

import pytest
import torch
from dsmoe_helpers import force_gates, small_config
from repro_core.modeling import DecoderConfig, DecoderLM, count_parameters
from repro_dsmoe.accounting import dense_parameter_counts, dsmoe_parameter_counts
from repro_dsmoe.baselines import PrunedMLP, calibrate_neuron_mask
from repro_dsmoe.convert import convert_model, main
from repro_dsmoe.modeling import DSMoEForCausalLM
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

LLAMA = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
LLAMA_1B = dict(  # meta-llama/Llama-3.2-1B config.json (shapes only)
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    tie_word_embeddings=True,
)


def tiny_llama(seed=0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**{**LLAMA, **overrides})).eval()


def test_param_count_is_dense_plus_routers_and_experts_are_exact_copies():
    dense = tiny_llama()
    model = convert_model(dense, num_experts=4)
    n_dense = sum(p.numel() for p in dense.parameters())
    n_moe = sum(p.numel() for p in model.parameters())
    assert n_moe - n_dense == LLAMA["num_hidden_layers"] * LLAMA["hidden_size"] * 4
    ref = dense.state_dict()
    for name, value in model.state_dict().items():
        if "router" in name:
            continue
        assert torch.equal(value, ref[name]), name


@pytest.mark.parametrize("tied", [False, True])
def test_dense_accounting_matches_instantiated_models(tied):
    dense = tiny_llama(tie_word_embeddings=tied)
    counts = dense_parameter_counts(dense.config)
    assert counts["total"] == sum(p.numel() for p in dense.parameters())
    moe = convert_model(dense, num_experts=8)
    assert dsmoe_parameter_counts(dense.config, 8, 8.0)["total"] == sum(
        p.numel() for p in moe.parameters()
    )


def test_accounting_reproduces_735m_activated_params_of_llama_3_2_1b():
    config = LlamaConfig(**LLAMA_1B)
    with torch.device("meta"):  # shapes only, no memory
        reference = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    assert dense_parameter_counts(config)["total"] == reference  # 1.236B
    counts = dsmoe_parameter_counts(config, 8, 3.02)
    assert counts["router"] == 16 * 2048 * 8
    assert 734e6 < counts["activated"] < 736e6  # Table 1: 735M
    assert counts["activated_ffn_fraction"] == pytest.approx(3.02 / 8)


def test_all_gates_on_gives_dense_llama_logits():
    dense = tiny_llama()
    model = convert_model(dense, num_experts=4).eval()
    for layer in model.model.layers:
        force_gates(layer.mlp)
    ids = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, dense(ids).logits, atol=1e-5, rtol=1e-5)


def test_converter_cli_end_to_end(tmp_path, capsys):
    dense = tiny_llama(seed=1)
    dense.save_pretrained(tmp_path / "llama")
    out = tmp_path / "dsmoe"
    assert main(["--base", str(tmp_path / "llama"), "--experts", "4", "--tau", "0.5",
                 "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "conversion.json").read_text())
    assert summary["dsmoe_parameters"] - summary["dense_parameters"] == 2 * 32 * 4
    import repro_dsmoe.modeling  # noqa: F401  (registers the model)

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert isinstance(model, DSMoEForCausalLM) and model.config.expert_size == 24
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        converted = model(ids).logits
        for layer in model.model.layers:
            force_gates(layer.mlp)
        torch.testing.assert_close(model(ids).logits, dense(ids).logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(converted, dense(ids).logits, atol=1e-3)  # gating is on otherwise
    # a second conversion into the same directory is refused
    assert main(["--base", str(tmp_path / "llama"), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_converter_from_core_decoder():
    torch.manual_seed(0)
    base = DecoderLM(DecoderConfig(**{**LLAMA, "intermediate_size": 64}))
    model = convert_model(base, num_experts=8)
    assert count_parameters(model)["total"] - count_parameters(base)["total"] == 2 * 32 * 8


@pytest.mark.parametrize("routing", ["dsmoe", "topk", "prune"])
def test_save_load_round_trip(tmp_path, routing):
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config(routing=routing, top_k_experts=2)).eval()
    ids = torch.randint(0, 48, (2, 9))
    if routing == "prune":
        calibrate_neuron_mask(model, ids, 0.5)
    with torch.no_grad():
        expected = model(ids).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is DSMoEForCausalLM and loaded.config.routing == routing
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected, atol=0, rtol=0)


def test_generate_matches_greedy_full_forward():
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config()).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.router.weight.normal_(0, 0.5)
    ids = torch.randint(0, 48, (1, 5))
    out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    seq = ids
    with torch.no_grad():
        for _ in range(6):  # no cache: the whole prefix each step
            nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(out, seq)


def test_prune_keeps_top_units_and_topk_matches_loop():
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config(routing="prune")).double().eval()
    ids = torch.randint(0, 48, (3, 8))
    kept = calibrate_neuron_mask(model, ids, 0.25)
    assert kept == [0.25, 0.25]
    mlp = model.model.layers[0].mlp
    assert isinstance(mlp, PrunedMLP)
    x = torch.randn(2, 4, 16, dtype=torch.float64)
    keep = mlp.neuron_mask.bool()
    z = torch.nn.functional.silu(x @ mlp.gate_proj.weight[keep].T) * (
        x @ mlp.up_proj.weight[keep].T
    )
    torch.testing.assert_close(mlp(x), z @ mlp.down_proj.weight[:, keep].T, atol=1e-12, rtol=0)

    topk = DSMoEForCausalLM(small_config(routing="topk", top_k_experts=2)).double().eval()
    block = topk.model.layers[0].mlp
    with torch.no_grad():
        block.router.weight.normal_(0, 1.0)
    probs = torch.softmax(x @ block.router.weight.T, -1)  # (2, 4, 8)
    w, idx = probs.topk(2, -1)
    w = w / w.sum(-1, keepdim=True)
    f = block.expert_size
    expected = torch.zeros_like(x)
    for b in range(2):
        for t in range(4):
            for j in range(2):
                i = int(idx[b, t, j])
                s = slice(i * f, (i + 1) * f)
                z = torch.nn.functional.silu(x[b, t] @ block.gate_proj.weight[s].T) * (
                    x[b, t] @ block.up_proj.weight[s].T
                )
                expected[b, t] += 8 * w[b, t, j] * (z @ block.down_proj.weight[:, s].T)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)
    block.inference_path = "sparse"
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)
