"""Finedeep layer invariants, each checked against a reference computed another way.

The references write the spec's equations (F1)-(F6) out expert by expert in fp64, with each
expert's output e_mk materialised and its gate computed from it, instead of the layer's batched
GEMMs with gates folded into the hidden units.
"""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from repro_core.config import ConfigError
from repro_core.layers import ForwardState, SwiGLUMLP
from repro_core.modeling import DecoderConfig, DecoderLM, count_parameters, flops_per_token
from repro_finedeep import (
    FinedeepConfig,
    FinedeepForCausalLM,
    FinedeepMLP,
    FinedeepModelConfig,
    measure_nsar,
    router_parameter_count,
)
from repro_finedeep.nsar import nsar
from transformers import AutoModelForCausalLM

D, FF = 12, 24
SHAPE = dict(
    vocab_size=50,
    hidden_size=D,
    intermediate_size=FF,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=32,
)


def finedeep_config(m=2, k=3, **switches):
    return FinedeepConfig(num_sublayers=m, experts_per_sublayer=k, **SHAPE, **switches)


def make_mlp(config, seed=0, std=0.4):
    """An fp64 FinedeepMLP with large random weights and random norm gains."""
    torch.manual_seed(seed)
    mlp = FinedeepMLP(config).double()
    with torch.no_grad():
        for name, p in mlp.named_parameters():
            if "norms" in name:
                p.copy_(1 + 0.5 * torch.randn_like(p))
            else:
                p.normal_(0, std)
    return mlp


def rms_norm(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def reference_sublayer(sub, u):
    """Σ_k g_k e_k with e_k (N, D) computed expert by expert, gates from (F4)-(F5)."""
    f = sub.expert_hidden_size
    outputs, logits = [], []
    for k in range(sub.num_experts):
        w_gate, w_up = sub.gate_up_proj[k, :f], sub.gate_up_proj[k, f:]  # (F_e, D)
        a = u @ w_gate.T
        z = a * torch.sigmoid(a) * (u @ w_up.T)  # (F2)
        e = z @ sub.down_proj[k]  # (F3): (N, D)
        outputs.append(e)
        if sub.router is not None:
            source = e if sub.router_input == "expert_output" else u
            logits.append(source @ sub.router[k])  # (N,)
    if sub.router is None:
        return sum(outputs)
    logits = torch.stack(logits, -1)  # (N, K)
    if sub.router_act == "sigmoid":
        s = 1 / (1 + torch.exp(-logits))
    else:
        s = torch.exp(logits - logits.max(-1, keepdim=True).values)
        s = s / s.sum(-1, keepdim=True)
    if sub.router_norm == "sum_to_one":
        s = s / s.sum(-1, keepdim=True)
    elif sub.router_norm == "sum_to_k":
        s = sub.num_experts * s / s.sum(-1, keepdim=True)
    return sum(s[:, k : k + 1] * outputs[k] for k in range(sub.num_experts))


def reference_post_norm_layer(mlp, h0, post_ln_weight, eps):
    """Post-LN as in the original Transformer: every residual add is followed by an RMSNorm,
    so the layer output (the new residual stream) is itself normalised.

    With a residual per sub-layer: h_m = RMSNorm_m(h_{m-1} + SL_m(in_m)), in_1 = x̂ (the
    decoder's post-attention norm of h_0), in_m = h_{m-1}. Without: the sub-layers are chained,
    each output post-normed, and the decoder's one residual add is normalised last.
    """
    gains = [norm.weight for norm in mlp.norms]  # M gains, one per add (or per chained output)
    x_hat = rms_norm(h0, post_ln_weight, eps)
    if mlp.residual_per_sublayer:
        stream = h0
        for m, sub in enumerate(mlp.sublayers):
            sublayer_input = x_hat if m == 0 else stream
            stream = rms_norm(stream + reference_sublayer(sub, sublayer_input), gains[m], eps)
        return stream
    y = reference_sublayer(mlp.sublayers[0], x_hat)
    for m in range(1, len(mlp.sublayers)):
        y = reference_sublayer(mlp.sublayers[m], rms_norm(y, gains[m - 1], eps))
    return rms_norm(h0 + y, gains[-1], eps)


def reference_block(mlp, h0, post_ln_weight, eps):
    """The block output h_M (what the decoder layer returns) from the residual stream h0."""
    x_hat = rms_norm(h0, post_ln_weight, eps)
    subs, norms = list(mlp.sublayers), list(mlp.norms)
    if mlp.norm_placement == "post":
        return reference_post_norm_layer(mlp, h0, post_ln_weight, eps)
    if not mlp.residual_per_sublayer:
        y = reference_sublayer(subs[0], x_hat)
        for sub, norm in zip(subs[1:], norms):
            y = reference_sublayer(sub, rms_norm(y, norm.weight, eps))
        return h0 + y
    h = h0 + reference_sublayer(subs[0], x_hat)  # (F6), u_1 = x̂
    for sub, norm in zip(subs[1:], norms):
        h = h + reference_sublayer(sub, rms_norm(h, norm.weight, eps))  # (F1), (F6)
    return h


# Every value of every switch: all router settings under the default norm layout, and all norm
# layouts under both router inputs.
SWITCHES = [
    (router_input, router_act, router_norm, "pre", True)
    for router_input, router_act, router_norm in itertools.product(
        ["expert_output", "sublayer_input"],
        ["sigmoid", "softmax", "none"],
        ["none", "sum_to_one", "sum_to_k"],
    )
] + [
    (router_input, "sigmoid", "sum_to_one", placement, residual)
    for router_input, placement, residual in itertools.product(
        ["expert_output", "sublayer_input"], ["pre", "post"], [True, False]
    )
]


@pytest.mark.parametrize("router_input,router_act,router_norm,norm_placement,residual", SWITCHES)
def test_layer_matches_handwritten_equations(
    router_input, router_act, router_norm, norm_placement, residual
):
    config = finedeep_config(
        m=3,
        k=2,
        router_input=router_input,
        router_act=router_act,
        router_norm=router_norm,
        norm_placement=norm_placement,
        residual_per_sublayer=residual,
    )
    mlp = make_mlp(config)
    torch.manual_seed(1)
    h0 = torch.randn(2, 5, D, dtype=torch.float64) * 2
    post_ln_weight = 1 + 0.3 * torch.randn(D, dtype=torch.float64)
    x_hat = rms_norm(h0, post_ln_weight, config.rms_norm_eps)
    ours = h0 + mlp(x_hat, ForwardState(shared={"residual": h0}))
    expected = reference_block(mlp, h0.reshape(-1, D), post_ln_weight, config.rms_norm_eps)
    torch.testing.assert_close(ours.reshape(-1, D), expected, rtol=1e-12, atol=1e-12)


def test_one_expert_with_unit_gate_equals_dense_mlp():
    """M = K = 1, g = 1, sub-layer 1's norm = post_attention_layernorm: the dense SwiGLU MLP."""
    config = finedeep_config(m=1, k=1, router_act="none")
    torch.manual_seed(0)
    dense = SwiGLUMLP(DecoderConfig(**SHAPE)).double()
    fine = FinedeepMLP(config).double()
    with torch.no_grad():
        fine.sublayers[0].gate_up_proj.copy_(
            torch.cat([dense.gate_proj.weight, dense.up_proj.weight])[None]
        )
        fine.sublayers[0].down_proj.copy_(dense.down_proj.weight.T[None])
    x = torch.randn(3, 7, D, dtype=torch.float64)
    torch.testing.assert_close(fine(x, ForwardState()), dense(x), rtol=0, atol=1e-14)


def test_one_expert_model_equals_dense_model():
    """The same check through the whole decoder: logits equal after copying the weights."""
    torch.manual_seed(0)
    dense = DecoderLM(DecoderConfig(**SHAPE)).double().eval()
    fine = FinedeepForCausalLM(finedeep_config(m=1, k=1, router_act="none")).double().eval()
    state = dense.state_dict()
    for i in range(SHAPE["num_hidden_layers"]):
        p = f"model.layers.{i}.mlp."
        gate_up = torch.cat([state.pop(p + "gate_proj.weight"), state.pop(p + "up_proj.weight")])
        state[p + "sublayers.0.gate_up_proj"] = gate_up[None]
        state[p + "sublayers.0.down_proj"] = state.pop(p + "down_proj.weight").T[None]
    fine.load_state_dict(state, strict=True)
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 9))
    torch.testing.assert_close(
        fine(input_ids=ids).logits, dense(input_ids=ids).logits, rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("residual", [True, False])
def test_post_norm_layers_output_a_normalised_residual_stream(residual):
    """Post-LN: each decoder layer's output has RMS 1 per token (unit norm gains at init),
    whatever the scale of its input; the residual is not a unit vector added to h_0."""
    torch.manual_seed(0)
    config = finedeep_config(m=2, k=2, norm_placement="post", residual_per_sublayer=residual)
    model = FinedeepForCausalLM(config).double().eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(50)  # h_0 of layer 0 far from unit RMS
    outputs = []
    for layer in model.model.layers:
        layer.register_forward_hook(lambda mod, args, out: outputs.append(out))
    model(input_ids=torch.randint(0, SHAPE["vocab_size"], (2, 9)))
    for out in outputs:
        rms = out.pow(2).mean(-1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("router_act", ["sigmoid", "softmax"])
@pytest.mark.parametrize("router_input", ["expert_output", "sublayer_input"])
def test_gates_run_in_fp32_under_bf16_autocast(router_input, router_act):
    """Router logits and gates in fp32 (no NaN) while the experts run in bf16 under autocast."""
    torch.manual_seed(0)
    config = finedeep_config(m=2, k=3, router_input=router_input, router_act=router_act)
    model = FinedeepForCausalLM(config).train()
    sub = model.model.layers[0].mlp.sublayers[1]
    seen = {}
    original = sub.gates

    def spy(u, z):
        seen["z"] = z.dtype
        seen["g"] = original(u, z)
        return seen["g"]

    sub.gates = spy
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert seen["z"] == torch.bfloat16  # the experts did run in bf16
    assert seen["g"].dtype == torch.float32
    assert bool(torch.isfinite(seen["g"]).all()) and bool(torch.isfinite(out.loss))
    assert bool(torch.isfinite(sub.router.grad).all()) and sub.router.grad.abs().sum() > 0
    with torch.no_grad():  # the fp32 gates agree with the gates of an fp32 forward
        u = torch.randn(8, D)
        _, z = sub.hidden_activations(u)
        reference = original(u, z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = original(u.bfloat16(), z.bfloat16())
    torch.testing.assert_close(autocast, reference, rtol=0.05, atol=0.02)


@pytest.mark.parametrize("router_input", ["expert_output", "sublayer_input"])
def test_gates_lie_in_open_unit_interval(router_input):
    torch.manual_seed(0)
    model = FinedeepForCausalLM(finedeep_config(m=2, k=4, router_input=router_input)).eval()
    sub = model.model.layers[0].mlp.sublayers[1]
    u = torch.randn(64, D) * 3
    _, z = sub.hidden_activations(u)
    g = sub.gates(u, z)
    assert g.shape == (64, 4)
    assert bool((g > 0).all()) and bool((g < 1).all())
    assert float(g.detach().std()) > 0  # the router does not output a constant


@pytest.mark.parametrize("router_input", ["expert_output", "sublayer_input"])
def test_every_expert_and_router_weight_receives_a_gradient(router_input):
    torch.manual_seed(0)
    model = FinedeepForCausalLM(finedeep_config(m=2, k=3, router_input=router_input))
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    for i, layer in enumerate(model.model.layers):
        for m, sub in enumerate(layer.mlp.sublayers):
            for name in ("gate_up_proj", "down_proj", "router"):
                grad = getattr(sub, name).grad
                assert grad is not None, f"layer {i} sub-layer {m} {name}: no gradient"
                per_expert = grad.flatten(1).abs().sum(1)  # (K,)
                assert bool((per_expert > 0).all()), f"layer {i} sub-layer {m} {name}: {per_expert}"


def test_sublayers_are_sequential():
    """Changing sub-layer 1 changes what sub-layer 2 sees (stacked in depth, not in parallel)."""
    mlp = make_mlp(finedeep_config(m=2, k=2))
    seen = []
    mlp.sublayers[1].register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].clone()))
    h0 = torch.randn(4, D, dtype=torch.float64)
    state = ForwardState(shared={"residual": h0})
    mlp(h0, state)
    with torch.no_grad():
        mlp.sublayers[0].down_proj.mul_(2)
    mlp(h0, state)
    assert not torch.allclose(seen[0], seen[1])


@pytest.mark.parametrize("m,k", [(1, 8), (2, 4), (4, 2), (8, 1)])
@pytest.mark.parametrize("norm_placement", ["pre", "post"])
def test_parameters_and_flops_equal_dense_up_to_router(m, k, norm_placement):
    shape = dict(SHAPE, intermediate_size=32)
    dense = DecoderLM(DecoderConfig(**shape))
    config = FinedeepConfig(
        num_sublayers=m, experts_per_sublayer=k, norm_placement=norm_placement, **shape
    )
    fine = FinedeepForCausalLM(config)
    layers, d = shape["num_hidden_layers"], shape["hidden_size"]
    router = layers * m * k * d
    norms = layers * (m - 1 if norm_placement == "pre" else m) * d
    assert router_parameter_count(config) == router + norms
    p_dense, p_fine = count_parameters(dense), count_parameters(fine)
    for key in ("total", "non_embedding", "activated"):
        assert p_fine[key] - p_dense[key] == router + norms, key
    expert_params = sum(
        p.numel() for n, p in fine.named_parameters() if "proj" in n and ".mlp." in n
    )
    assert expert_params == layers * 3 * d * shape["intermediate_size"]  # exactly the dense FFN
    f_dense, f_fine = flops_per_token(dense, 16), flops_per_token(fine, 16)
    assert f_fine["forward"] - f_dense["forward"] == 2 * (router + norms)
    if (m, norm_placement) == (1, "pre"):
        assert p_fine["total"] - p_dense["total"] == router  # (1, K): only the router


def test_save_load_round_trip_through_auto_classes(tmp_path):
    torch.manual_seed(0)
    model = FinedeepForCausalLM(finedeep_config(m=2, k=3, router_norm="sum_to_one")).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is FinedeepForCausalLM
    assert loaded.config.router_norm == "sum_to_one" and loaded.config.num_sublayers == 2
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 8))
    torch.testing.assert_close(
        loaded(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0
    )


def test_generate_with_cache_matches_full_forward():
    torch.manual_seed(0)
    model = FinedeepForCausalLM(finedeep_config(m=2, k=3)).eval()
    ids = torch.randint(0, SHAPE["vocab_size"], (1, 5))
    out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 11)
    greedy = ids
    for _ in range(6):  # greedy decoding without a cache
        nxt = model(input_ids=greedy).logits[:, -1].argmax(-1, keepdim=True)
        greedy = torch.cat([greedy, nxt], 1)
    assert torch.equal(out, greedy)


def test_nsar_counts_entries_above_threshold():
    a = torch.tensor([[0.0, 0.05, -0.2], [0.1, 0.5, -0.11]])
    assert nsar(a, 0.1) == pytest.approx(3 / 6)  # |a| > 0.1 strictly: -0.2, 0.5, -0.11
    assert nsar(a, 0.01) == pytest.approx(5 / 6)


def test_nsar_per_layer_for_dense_and_finedeep():
    torch.manual_seed(0)
    blocks = torch.randint(0, SHAPE["vocab_size"], (6, 16)).numpy()
    dense = DecoderLM(DecoderConfig(**SHAPE))
    fine = FinedeepForCausalLM(finedeep_config(m=2, k=3))
    for model in (dense, fine):
        result = measure_nsar(model, blocks, batch_size=4)
        for tensor in ("silu", "gated"):
            per_layer = result["per_layer"][tensor]["0.1"]
            assert len(per_layer) == SHAPE["num_hidden_layers"]
            assert all(0.0 <= v <= 1.0 for v in per_layer)
        # a threshold of 0 counts every non-zero activation
        assert result["mean"]["silu"]["0.01"] >= result["mean"]["silu"]["0.1"]
    # reference for dense layer 0 computed by hand from the embeddings
    with torch.no_grad():
        x = dense.model.embed_tokens(torch.from_numpy(blocks))
        layer = dense.model.layers[0]
        pos = torch.arange(16)[None].expand(6, 16)
        h = x + layer.self_attn(layer.input_layernorm(x), dense.model.rotary_emb(x, pos), None)
        u = layer.post_attention_layernorm(h)
        act = F.silu(u @ layer.mlp.gate_proj.weight.T)
    expected = float((act.abs() > 0.1).double().mean())
    got = measure_nsar(dense, blocks, batch_size=4)["per_layer"]["silu"]["0.1"][0]
    assert math.isclose(got, expected, rel_tol=1e-9)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.intermediate_size"):
        FinedeepModelConfig(intermediate_size=100, num_sublayers=3, experts_per_sublayer=2)
    with pytest.raises(ConfigError, match="model.router_norm"):
        FinedeepModelConfig(intermediate_size=96, router_norm="softmax")
    with pytest.raises(ValueError, match="router_input"):
        finedeep_config(router_input="token")


@pytest.mark.parametrize("router_input", ["expert_output", "sublayer_input"])
@pytest.mark.parametrize("router_act", ["sigmoid", "softmax"])
def test_router_ablations_are_preset_overrides(router_input, router_act):
    """The spec's router ablations (router input, sigmoid vs softmax) are ``--set`` switches of
    a run config that reach every sub-layer of the built model."""
    from repro_core.config import load_config, package_preset_dirs
    from repro_finedeep import train as train_module

    overrides = [f"model.router_input={router_input}", f"model.router_act={router_act}"]
    cfg = load_config(
        "debug", overrides, FinedeepModelConfig, package_preset_dirs(train_module.__file__)
    )
    model = cfg.model.build(vocab_size=50, max_position_embeddings=64)
    subs = [sub for layer in model.model.layers for sub in layer.mlp.sublayers]
    assert {(s.router_input, s.router_act) for s in subs} == {(router_input, router_act)}
    u = torch.randn(6, cfg.model.hidden_size)
    _, z = subs[0].hidden_activations(u)
    g = subs[0].gates(u, z)  # (6, K)
    if router_act == "softmax":
        torch.testing.assert_close(g.sum(-1), torch.ones(6))
    else:  # independent sigmoids: the sum is free, each in (0, 1)
        assert bool(((g > 0) & (g < 1)).all()) and not torch.allclose(g.sum(-1), torch.ones(6))
