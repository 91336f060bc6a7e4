"""Invariants of the UniAttn model (spec §5.1), on tiny random models with peaked attention."""

from __future__ import annotations

import math

import pytest
import torch
from repro_core.layers import ForwardState
from repro_core.modeling import DecoderConfig, DecoderLM, count_parameters
from repro_uniattn import UniAttnForCausalLM, kv_cache_bytes
from repro_uniattn.convert import convert_checkpoint, fit_compensation
from repro_uniattn.modeling import causal_probs, dense_probs
from transformers import AutoModelForCausalLM
from transformers.cache_utils import DynamicCache

L, D = 6, 32


def base_model(kv_heads: int = 2, seed: int = 0) -> DecoderLM:
    torch.manual_seed(seed)
    cfg = DecoderConfig(
        vocab_size=64,
        hidden_size=D,
        intermediate_size=64,
        num_hidden_layers=L,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        initializer_range=0.2,  # peaked attention: sharing the wrong P would show
        max_position_embeddings=64,
    )
    return DecoderLM(cfg).eval()


def ids(batch=2, length=12, seed=1):
    return torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(seed))


def with_random_compensation(model, scale=0.05, seed=3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.model.layers:
            comp = layer.self_attn.compensation
            if comp is not None:
                comp.weight.copy_(scale * torch.randn(comp.weight.shape, generator=gen))
    return model


def reference_forward(base: DecoderLM, model: UniAttnForCausalLM, x: torch.Tensor) -> torch.Tensor:
    """fp64 forward written from the equations, layer by layer, using the base's weights for
    shared parts and the unified model's W_c (independent of UniAttnAttention)."""
    cfg = model.config
    H, Hkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    reusing = cfg.reusing_layers()
    b = base.double()
    T = x.shape[1]
    h = b.model.embed_tokens(x)
    cos, sin = b.model.rotary_emb(h, torch.arange(T)[None])
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    probs = {}
    for i, layer in enumerate(b.model.layers):
        attn = layer.self_attn
        u = layer.input_layernorm(h)
        v = attn.v_proj(u).view(1, T, Hkv, hd).transpose(1, 2).repeat_interleave(H // Hkv, 1)
        if i in reusing:
            p = probs[reusing[i]]
        else:
            q = attn.q_proj(u).view(1, T, H, hd).transpose(1, 2)
            k = attn.k_proj(u).view(1, T, Hkv, hd).transpose(1, 2).repeat_interleave(H // Hkv, 1)
            rot = lambda t: t * cos + torch.cat((-t[..., hd // 2 :], t[..., : hd // 2]), -1) * sin  # noqa: E731
            s = rot(q) @ rot(k).transpose(-1, -2) / math.sqrt(hd)
            p = torch.softmax(s.masked_fill(~causal, float("-inf")), -1)
            probs[i] = p
        a = attn.o_proj((p @ v).transpose(1, 2).reshape(1, T, H * hd))
        if i in reusing:
            a = a + u @ model.model.layers[i].self_attn.compensation.weight.double().T
        h = h + a
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    out = b.lm_head(b.model.norm(h))
    base.float()
    return out


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("grouping", [(2, 2, 6), (3, 1, 5), (4, 0, 99)])
@torch.no_grad()
def test_matches_fp64_equations_for_any_grouping_and_gqa(kv_heads, grouping):
    base = base_model(kv_heads)
    model = with_random_compensation(convert_checkpoint(base, *grouping))
    x = ids(batch=1)
    ref = reference_forward(base, model, x)
    assert float((model(x).logits.double() - ref).abs().max()) < 1e-4


@pytest.mark.parametrize("length,block", [(12, 5), (12, 4), (13, 1), (9, 8)])
def test_blocked_causal_softmax_equals_one_block(length, block):
    """The root's query blocks (which skip the masked upper triangle) change nothing: logits,
    the dense P and every gradient equal the single T x S block, in fp64."""
    base = base_model(kv_heads=2).double()
    outs = []
    for block_size in (0, block):
        model = with_random_compensation(convert_checkpoint(base, 3, 0, 6)).double().train()
        for layer in model.model.layers:
            layer.self_attn.block_size = block_size
        x = ids(length=length)
        state = ForwardState(input_ids=x)
        hidden, _, _ = model.model(input_ids=x, state=state)
        model.lm_head(hidden).logsumexp(-1).mean().backward()
        probs = dense_probs(state.shared["uniattn_probs_0"], model.config.num_attention_heads)
        grads = [p.grad.clone() for p in model.parameters()]
        outs.append((hidden.detach(), probs.detach(), grads))
    (h0, p0, g0), (h1, p1, g1) = outs
    assert torch.allclose(h0, h1, atol=1e-12) and torch.allclose(p0, p1, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g0, g1))
    assert float(p0.sum(-1).sub(1).abs().max()) < 1e-12  # rows are distributions
    assert float(p0.triu(1).abs().max()) == 0.0  # causal


def test_blocked_probs_skip_the_upper_triangle():
    q, k = torch.randn(1, 4, 10, 8), torch.randn(1, 2, 10, 8)
    blocks = causal_probs(q, k, None, block_size=4)
    assert [(b.start, b.end, b.keys) for b in blocks] == [(0, 4, 4), (4, 8, 8), (8, 10, 10)]
    assert [tuple(b.probs.shape) for b in blocks] == [(1, 2, 8, 4), (1, 2, 8, 8), (1, 2, 4, 10)]
    assert len(causal_probs(q[:, :, -1:], k, None, block_size=4)) == 1  # decoding: one block


@torch.no_grad()
def test_no_superblocks_equals_base():
    base = base_model()
    model = convert_checkpoint(base, group_size=1, start=0, end=L)
    assert model.config.reusing_layers() == {}
    x = ids()
    assert torch.allclose(model(x).logits, base(x).logits, atol=1e-5)


@torch.no_grad()
def test_zero_compensation_equals_unification_without_compensation():
    base, x = base_model(), ids()
    zero = convert_checkpoint(base, 2, 2, 6)
    plain = convert_checkpoint(base, 2, 2, 6, compensation=False)
    assert torch.equal(zero(x).logits, plain(x).logits)
    assert not torch.allclose(zero(x).logits, base(x).logits, atol=1e-3)  # unification acts


@pytest.mark.parametrize(
    "sharing,kv_heads", [("softmax", 1), ("softmax", 2), ("softmax", 4), ("kv", 2)]
)
@torch.no_grad()
def test_cached_decoding_matches_full_forward(sharing, kv_heads):
    model = with_random_compensation(
        convert_checkpoint(base_model(kv_heads), 2, 1, 6, sharing=sharing)
    )
    x = ids(length=14)
    full = model(x).logits
    cache = DynamicCache()
    steps = [model(x[:, :9], cache=cache, use_cache=True).logits]
    for t in range(9, 14):
        steps.append(model(x[:, t : t + 1], cache=cache, use_cache=True).logits)
    assert float((torch.cat(steps, 1) - full).abs().max()) < 1e-5


@torch.no_grad()
def test_left_padding_matches_unpadded_rows():
    model = with_random_compensation(convert_checkpoint(base_model(), 2, 2, 6))
    x = ids(batch=1, length=10)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 10)], 1).long()
    out = model(padded, attention_mask=mask).logits[:, 3:]
    assert float((out - model(x).logits).abs().max()) < 1e-5


@torch.no_grad()
def test_kv_bytes_and_softmax_calls():
    base = base_model()
    x = ids(batch=1, length=10)
    per_tensor = 10 * 2 * base.config.head_dim * 4
    caches = {}
    for name, model in {
        "base": convert_checkpoint(base, 1, 0, L),
        "uniattn": convert_checkpoint(base, 2, 2, 6),
        "cla": convert_checkpoint(base, 2, 2, 6, sharing="kv"),
    }.items():
        cache = DynamicCache()
        model(x, cache=cache, use_cache=True)
        caches[name] = kv_cache_bytes(cache) // per_tensor
        n_softmax = len(model.softmax_layers())
        assert n_softmax == {"base": L, "uniattn": L - 2, "cla": L}[name]
    assert caches == {"base": 2 * L, "uniattn": 2 * L - 2, "cla": 2 * (L - 2)}


def test_parameter_accounting():
    base = base_model()
    model = convert_checkpoint(base, 2, 2, 6)
    c = base.config
    n = len(model.config.reusing_layers())
    delta = n * (
        D * D - D * c.num_attention_heads * c.head_dim - D * c.num_key_value_heads * c.head_dim
    )
    assert count_parameters(model)["total"] - count_parameters(base)["total"] == delta


def test_gradients_stage1_and_through_shared_probabilities():
    model = with_random_compensation(convert_checkpoint(base_model(), 2, 2, 6)).train()
    x = ids()
    # stage 1: only W_c trainable
    for name, p in model.named_parameters():
        p.requires_grad_("compensation" in name)
    model(x, labels=x).loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == ("compensation" in name), name
    model.zero_grad(set_to_none=True)
    # stage 2: a loss on the output of reusing layer 3 alone reaches root 2's W_q and W_k
    for p in model.parameters():
        p.requires_grad_(True)
    captured = {}
    model.model.layers[3].self_attn.register_forward_hook(lambda m, a, o: captured.update(out=o))
    model(x)
    captured["out"].pow(2).sum().backward()
    root = model.model.layers[2].self_attn
    assert root.q_proj.weight.grad.abs().sum() > 0 and root.k_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["lsq_tokens", "lsq_official"])
def test_least_squares_init_reduces_drift(method):
    base = base_model(seed=5)
    model = convert_checkpoint(base, 2, 0, 6)
    calib = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(7))
    report = fit_compensation(model, base, calib, method=method, ridge=1e-6)
    layers = sorted(model.config.reusing_layers())
    assert sorted(k for k in report if isinstance(k, int)) == layers
    key = "token_residual" if method == "lsq_tokens" else "mean_residual"
    for layer in layers:
        assert report[layer][key] < 0.95  # 1.0 = no compensation
        assert model.model.layers[layer].self_attn.compensation.weight.abs().sum() > 0
    if method == "lsq_official":  # T = 12 rows < D = 32: the official fit interpolates exactly
        assert report[layers[0]]["mean_residual"] < 1e-6


def test_least_squares_fit_runs_the_base_once_and_matches_a_direct_solve():
    """N reusing layers cost N + 1 passes over the calibration data (the base model's targets
    are cached), and each W_c equals the ridge solution computed directly, in one batch, from
    the drift of its layer with the earlier W_c active."""
    base = base_model(seed=5)
    model = convert_checkpoint(base, 2, 0, 6)  # reusing layers 1, 3, 5
    layers = sorted(model.config.reusing_layers())
    calib = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(7))
    calls = {"base": 0, "model": 0}
    base.register_forward_pre_hook(
        lambda m, a, k: calls.__setitem__("base", calls["base"] + 1), with_kwargs=True
    )
    model.register_forward_pre_hook(
        lambda m, a, k: calls.__setitem__("model", calls["model"] + 1), with_kwargs=True
    )
    fit_compensation(model, base, calib, method="lsq_tokens", ridge=1e-3, batch_size=8)
    batches = 2
    assert calls == {"base": batches, "model": len(layers) * batches}

    for layer in layers:
        comp = model.model.layers[layer].self_attn.compensation
        fitted = comp.weight.detach().clone()
        with torch.no_grad():
            comp.weight.zero_()  # later W_c do not reach layer `layer`; earlier ones stay
        _, y_base = record_layer(base, layer, calib)
        u, y_cur = record_layer(model, layer, calib)
        b, a = u.reshape(-1, D), (y_base - y_cur).reshape(-1, D)
        gram = b.T @ b
        lam = 1e-3 * torch.trace(gram) / D
        expected = torch.linalg.solve(gram + lam * torch.eye(D, dtype=gram.dtype), b.T @ a).T
        torch.testing.assert_close(fitted.double(), expected, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            comp.weight.copy_(fitted)


def record_layer(m, layer, calib):
    """u_l (attention input) and y_l = x_l + a_l of one layer, in fp64, over ``calib``."""
    out = {}
    block = m.model.layers[layer]
    hooks = [
        block.register_forward_pre_hook(lambda mod, args: out.update(x=args[0])),
        block.self_attn.register_forward_hook(lambda mod, args, o: out.update(u=args[0], a=o)),
    ]
    with torch.no_grad():
        m(input_ids=calib)
    for h in hooks:
        h.remove()
    return out["u"].double(), (out["x"] + out["a"]).double()


@pytest.mark.parametrize("length", [12, 48])  # T < D (exact interpolant) and T > D (least squares)
def test_official_estimator_is_the_pinv_of_position_wise_sample_means(length):
    """lsq_official (spec §1.3): W = pinv(mean_n B) mean_n A over the calibration samples, per
    position, sequentially in layer order; the reference is written out with numpy's SVD."""
    import numpy as np

    base = base_model(seed=5)
    model = convert_checkpoint(base, 2, 0, 6)  # reusing layers 1, 3, 5
    calib = torch.randint(0, 64, (16, length), generator=torch.Generator().manual_seed(7))
    fit_compensation(model, base, calib, method="lsq_official", batch_size=8)
    for layer in sorted(model.config.reusing_layers()):
        comp = model.model.layers[layer].self_attn.compensation
        fitted = comp.weight.detach().clone()
        with torch.no_grad():
            comp.weight.zero_()  # later W_c do not reach `layer`; earlier ones stay fitted
        _, y_base = record_layer(base, layer, calib)
        u, y_cur = record_layer(model, layer, calib)
        a_mean = (y_base - y_cur).numpy().mean(axis=0)  # (T, D) position-wise sample means
        b_mean = u.numpy().mean(axis=0)
        U, S, Vt = np.linalg.svd(b_mean, full_matrices=False)
        keep = S > 1e-10
        pinv = Vt[keep].T @ np.diag(1.0 / S[keep]) @ U[:, keep].T  # (D, T)
        expected = torch.from_numpy(pinv @ a_mean).T  # nn.Linear layout (out, in)
        torch.testing.assert_close(fitted.double(), expected, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            comp.weight.copy_(fitted)


def test_zero_init_and_save_load_generate(tmp_path):
    base = base_model()
    model = with_random_compensation(convert_checkpoint(base, 2, 2, 6))
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, UniAttnForCausalLM)
    assert loaded.config.superblocks() == [[2, 3], [4, 5]]
    x = ids()
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    out = loaded.generate(x[:, :4], max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (2, 9)
    # greedy generation with the V-only cache equals argmax of full forwards
    seq = x[:, :4]
    with torch.no_grad():
        for _ in range(5):
            seq = torch.cat([seq, loaded(seq).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(out, seq)
