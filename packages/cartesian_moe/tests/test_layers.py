"""CartesianMoE block: the spec's golden fixture against an fp64 reference of its equations,
Cartesian structure, reductions, and parameter parity of the Table 1 baselines."""

import pytest
import torch
from repro_cartesian_moe.layers import VARIANTS, CartesianMoEFFN, build_ffn, run_ffn
from repro_core.layers import RMSNorm
from repro_core.moe import MoEFeedForward, count_block_parameters, set_disable_top1

EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# The golden fixture of spec §1.7 and an fp64 reference of the equations of spec §1.3


def golden_fixture():
    """Weights drawn in the spec's order from one generator seeded 1234 (nn.Linear layout)."""
    gen = torch.Generator().manual_seed(1234)

    def draw(*shape):
        return torch.randn(*shape, generator=gen) * 0.2

    x = torch.randn(5, 16, generator=gen)  # unscaled; h = x (attention contributes 0)
    sublayers = []
    for _ in ("A", "B"):
        norm_w = 1 + draw(16)
        router = draw(4, 16)
        experts = [(draw(16, 16), draw(16, 16), draw(16, 16)) for _ in range(4)]
        shared = (draw(16, 16), draw(16, 16), draw(16, 16))
        coef_w, coef_b = draw(2, 16), draw(2)
        sublayers.append(
            dict(
                norm_w=norm_w,
                router=router,
                experts=experts,
                shared=shared,
                coef_w=coef_w,
                coef_b=coef_b,
            )
        )
    return x, sublayers


def reference_block(x, sublayers, top_k=2, disable_top1=False):
    """fp64, token by token, straight from the equations; returns (out, routes A, routes B)."""
    x, sublayers = x.double(), [to_float64(p) for p in sublayers]

    def rmsnorm(z, w):
        return w * z / torch.sqrt(z.pow(2).mean() + EPS)

    def ffn(z, gate, up, down):  # W_down(SiLU(W_gate z) ⊙ (W_up z))
        g = gate @ z
        return down @ (g / (1 + torch.exp(-g)) * (up @ z))

    def sublayer(h, p):
        z = rmsnorm(h, p["norm_w"])
        logits = p["router"] @ z
        probs = torch.exp(logits) / torch.exp(logits).sum()
        ranked = sorted(range(len(probs)), key=lambda i: -float(probs[i]))
        if disable_top1:  # the top-1 expert's probability is zeroed before the top-k
            ranked = ranked[1:]
        chosen = ranked[:top_k]
        total = sum(probs[i] for i in chosen) if top_k > 1 else 1.0
        r = sum(probs[i] / total * ffn(z, *p["experts"][i]) for i in chosen)
        c = torch.exp(p["coef_w"] @ z + p["coef_b"])
        c = c / c.sum()
        return h + c[0] * r + c[1] * ffn(z, *p["shared"]), sorted(chosen)

    outs, routes_a, routes_b = [], [], []
    for h in x:
        y, route_a = sublayer(h, sublayers[0])
        out, route_b = sublayer(y, sublayers[1])
        outs.append(out)
        routes_a.append(route_a)
        routes_b.append(route_b)
    return torch.stack(outs), routes_a, routes_b


def to_float64(p):
    return {
        "norm_w": p["norm_w"].double(),
        "router": p["router"].double(),
        "experts": [tuple(w.double() for w in e) for e in p["experts"]],
        "shared": tuple(w.double() for w in p["shared"]),
        "coef_w": p["coef_w"].double(),
        "coef_b": p["coef_b"].double(),
    }


def load_into(block: CartesianMoEFFN, sublayers) -> RMSNorm:
    """Copy the fixture into ``block``; returns the decoder's post-attention norm (norm_w of A)."""
    post_attention_norm = RMSNorm(16, eps=EPS)
    with torch.no_grad():
        post_attention_norm.weight.copy_(sublayers[0]["norm_w"])
        block.mid_norm.weight.copy_(sublayers[1]["norm_w"])
        for moe, p in zip((block.moe_a, block.moe_b), sublayers):
            moe.router.weight.copy_(p["router"])
            for e, (gate, up, down) in enumerate(p["experts"]):
                moe.experts.gate_up_proj[e].copy_(torch.cat([gate, up]))
                moe.experts.down_proj[e].copy_(down)
            if moe.shared_expert is not None:
                gate, up, down = p["shared"]
                moe.shared_expert.gate_proj.weight.copy_(gate)
                moe.shared_expert.up_proj.weight.copy_(up)
                moe.shared_expert.down_proj.weight.copy_(down)
                moe.coefficient.weight.copy_(p["coef_w"])
                moe.coefficient.bias.copy_(p["coef_b"])
    return post_attention_norm


def fixture_block(dtype=torch.float32):
    x, sublayers = golden_fixture()
    block = CartesianMoEFFN(16, 4, 16, 2, shared_expert_hidden_size=16, rms_norm_eps=EPS)
    norm = load_into(block, sublayers)
    return x.to(dtype), sublayers, block.to(dtype), norm.to(dtype)


def block_forward(block, norm, h):
    """What the decoder does around the MLP: ``h + mlp(post_attention_norm(h), residual=h)``."""
    delta, aux = block(norm(h), h)
    return h + delta, aux


def routes(aux):
    return aux.router.indices.sort(-1).values.tolist()


@pytest.mark.parametrize("disable_top1", [False, True])
def test_golden_fixture_matches_fp64_reference(disable_top1):
    x, sublayers, block, norm = fixture_block()
    block.set_disable_top1(disable_top1)
    out, (aux_a, aux_b) = block_forward(block, norm, x)
    ref, routes_a, routes_b = reference_block(x, sublayers, disable_top1=disable_top1)
    assert routes(aux_a) == routes_a
    assert routes(aux_b) == routes_b
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
    # fp64 run of the same layer. The core RMSNorm normalises in fp32 even for fp64 inputs,
    # which bounds the agreement at ~1e-7; routing, dispatch and mixing add nothing to it.
    x64, _, block64, norm64 = fixture_block(torch.float64)
    block64.set_disable_top1(disable_top1)
    out64, _ = block_forward(block64, norm64, x64)
    torch.testing.assert_close(out64, ref, rtol=0, atol=1e-6)


def test_router_b_sees_normed_output_of_a():
    x, _, block, norm = fixture_block(torch.float64)
    _, (aux_a, aux_b) = block_forward(block, norm, x)
    with torch.no_grad():
        block.moe_a.experts.down_proj.mul_(25.0)  # change only A's expert outputs
    _, (aux_a2, aux_b2) = block_forward(block, norm, x)
    assert torch.equal(aux_a2.router.indices, aux_a.router.indices)  # A routes as before
    assert routes(aux_b2) != routes(aux_b)  # B's routing follows A's output
    expected_b_input = block.mid_norm(x + block.moe_a(norm(x))[0])
    torch.testing.assert_close(aux_b2.router.logits, expected_b_input @ block.moe_b.router.weight.T)


def test_top1_without_shared_equals_composite_expert_enumeration():
    torch.manual_seed(0)
    n, d = 3, 16
    block = CartesianMoEFFN(d, n, 8, 1, shared_expert_hidden_size=0, init_std=0.3).double()
    norm = RMSNorm(d).double()
    h = torch.randn(20, d, dtype=torch.float64)
    out, (aux_a, aux_b) = block_forward(block, norm, h)
    moe_a, moe_b = block.moe_a, block.moe_b
    u = norm(h)
    p_a = torch.softmax(u @ moe_a.router.weight.T, -1)
    i_star = p_a.argmax(-1)
    # E_ij(h) = y_i + g_B · B_j(norm(y_i)), y_i = h + g_A · A_i(norm(h)), for every (i, j).
    pairs_used = set()
    for t in range(h.shape[0]):
        composites = {}
        for i in range(n):
            y_i = h[t] + p_a[t, i] * moe_a.experts.expert_forward(i, u[t : t + 1])[0]
            v_i = block.mid_norm(y_i)
            p_b = torch.softmax(moe_b.router.weight @ v_i, -1)
            for j in range(n):
                b_j = moe_b.experts.expert_forward(j, v_i[None])[0]
                composites[i, j] = (y_i + p_b[j] * b_j, p_b)
        i = int(i_star[t])
        j = int(composites[i, 0][1].argmax())
        pairs_used.add((i, j))
        torch.testing.assert_close(out[t], composites[i, j][0], rtol=0, atol=1e-12)
        assert (aux_a.router.indices[t, 0], aux_b.router.indices[t, 0]) == (i, j)
    assert len(pairs_used) > 1 and len(pairs_used) <= n * n


def test_zero_sublayer_b_reduces_to_single_fine_grained_moe():
    torch.manual_seed(1)
    block = CartesianMoEFFN(16, 4, 8, 2, shared_expert_hidden_size=8, init_std=0.3).double()
    with torch.no_grad():
        block.moe_b.experts.down_proj.zero_()
        block.moe_b.shared_expert.down_proj.weight.zero_()
    norm = RMSNorm(16).double()
    h = torch.randn(2, 7, 16, dtype=torch.float64)
    out, _ = block_forward(block, norm, h)
    single, _ = block.moe_a(norm(h))
    torch.testing.assert_close(out, h + single, rtol=0, atol=1e-12)


def test_aux_one_per_router_with_gradients_to_both_routers():
    torch.manual_seed(2)
    block = build_ffn("cartesian", 16, 32, 4)
    h = torch.randn(3, 8, 16)
    delta, auxes = run_ffn(block, h, h)
    assert len(auxes) == 2
    lb = sum(a.load_balancing_loss for a in auxes)
    lb.backward()
    assert block.moe_a.router.weight.grad.abs().sum() > 0
    assert block.moe_b.router.weight.grad.abs().sum() > 0
    for aux in auxes:
        assert aux.load.tokens_per_expert.sum() == 3 * 8 * 2
        assert aux.router.indices.shape == (24, 2)
    # Shared-expert coefficients are a convex combination.
    coef = block.moe_a.coefficient(h).softmax(-1)
    assert torch.all((coef > 0) & (coef < 1))
    torch.testing.assert_close(coef.sum(-1), torch.ones(3, 8))


def test_set_disable_top1_reaches_both_cartesian_routers():
    block = build_ffn("cartesian", 16, 32, 4)
    assert set_disable_top1(block, True) == 2
    assert block.moe_a.router.disable_top1 and block.moe_b.router.disable_top1
    block.set_disable_top1(False, sublayers=("b",))
    assert block.moe_a.router.disable_top1 and not block.moe_b.router.disable_top1


# ---------------------------------------------------------------------------------------------
# Parameter parity (spec §1.4)


def expert_and_shared_parameters(block):
    """(routed expert, shared expert) parameter counts of a build_ffn block."""
    moes = [block.moe_a, block.moe_b] if isinstance(block, CartesianMoEFFN) else [block]
    routed = sum(count_block_parameters(m.experts) for m in moes)
    shared = sum(
        count_block_parameters(m.shared_expert) for m in moes if m.shared_expert is not None
    )
    return routed, shared


@pytest.mark.parametrize("d,w,n", [(16, 32, 4), (64, 128, 8), (768, 3072, 16)])
def test_baselines_have_equal_total_and_activated_parameters(d, w, n):
    unit = 3 * d * w  # one full-width SwiGLU FFN
    vocab = 100
    with torch.device("meta"):
        blocks = {v: build_ffn(v, d, w, n, vocab_size=vocab) for v in VARIANTS}
    router, coef, norm = n * d, 2 * d + 2, d
    extras = {  # everything that is not an expert parameter, listed explicitly
        "smoe_share": router + coef,
        "smoe_top3": router,
        "fine_grained": 2 * router + coef,
        "cartesian": 2 * router + 2 * coef + norm,
        "cartesian_no_shared": 2 * router + norm,
        "smoe_topp": router + coef,
        "hash_share": coef,  # its (vocab, N) token table is a buffer by default ("fixed")
    }
    activated_units = {  # expert units per token
        "smoe_share": 3 * unit,
        "smoe_top3": 3 * unit * (n + 1) // n,
        "fine_grained": 3 * unit,
        "cartesian": 3 * unit,
        "cartesian_no_shared": 2 * unit,
        "smoe_topp": (n + 1) * unit,  # top-p: the cap, every routed expert + the shared one
        "hash_share": 3 * unit,
    }
    for variant, block in blocks.items():
        routed, shared = expert_and_shared_parameters(block)
        total_units = n * unit if variant == "cartesian_no_shared" else (n + 1) * unit
        assert routed + shared == total_units, variant
        assert count_block_parameters(block) == total_units + extras[variant], variant
        activated = count_block_parameters(block, activated=True)
        assert activated == activated_units[variant] + extras[variant], variant
        assert block.num_activated_parameters() == activated, variant
    # The three parameter-matched variants split experts/shared identically.
    splits = {
        v: expert_and_shared_parameters(blocks[v])
        for v in ("smoe_share", "fine_grained", "hash_share")
    }
    splits["cartesian"] = expert_and_shared_parameters(blocks["cartesian"])
    assert len(set(splits.values())) == 1
    assert splits["cartesian"] == (n * unit, unit)


def test_paper_moe_base_parameter_counts():
    """Table 1 MoE-Base: 12 layers d=768 W=3072, MoE every other layer (6), N=16, vocab 32000,
    untied: 842M total, 247M activated for SMoE-Share (spec §1.4 arithmetic)."""
    d, w, n, layers, vocab = 768, 3072, 16, 12, 32000
    attention = 4 * d * d
    dense_mlp = 3 * d * w
    norms = 2 * d
    embeddings = 2 * vocab * d + d  # untied input/output + final norm
    with torch.device("meta"):
        moe = build_ffn("smoe_share", d, w, n)
        cartesian = build_ffn("cartesian", d, w, n)
    base = embeddings + layers * (attention + norms) + (layers // 2) * dense_mlp
    total = base + (layers // 2) * count_block_parameters(moe)
    activated = base + (layers // 2) * count_block_parameters(moe, activated=True)
    assert round(total / 1e6) == 842 and round(activated / 1e6) == 247
    assert (
        abs(count_block_parameters(cartesian) - count_block_parameters(moe))
        == n * d + 2 * d + 2 + d
    )


def test_unknown_variant_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed"):
        build_ffn("smoe", 16, 32, 4)
    assert isinstance(build_ffn("smoe_share", 16, 32, 4), MoEFeedForward)


def test_bench_reports_medians_and_ratios_of_the_timed_steps(monkeypatch):
    """With a fake clock under which each step takes a known time, the reported tokens/s and
    ratios are exactly tokens / median seconds and dense seconds / variant seconds."""
    from types import SimpleNamespace

    from repro_cartesian_moe import bench

    clock = SimpleNamespace(now=0.0)
    # seconds per call, round by round (3 timed rounds after 1 warm-up): medians 2, 4, 1
    durations = {"dense": [9, 2, 3, 1], "cartesian": [9, 4, 5, 3], "smoe_share": [9, 1, 7, 0.5]}
    calls = dict.fromkeys(durations, 0)

    def step_of(name):
        def step():
            clock.now += durations[name][calls[name]]
            calls[name] += 1

        return step

    monkeypatch.setattr(bench, "ffn_step_functions", lambda *a: {n: step_of(n) for n in durations})
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    result = bench.measure_ffn_speed(
        batch_size=2, seq_len=8, repeats=3, warmup=1, variants=("cartesian", "smoe_share")
    )
    assert result["dense_tokens_per_s"] == 16 / 2
    assert result["variants"]["cartesian"] == {
        "tokens_per_s": 16 / 4,
        "ratio_to_dense": 0.5,
        "seconds": 4,
    }
    assert result["variants"]["smoe_share"]["ratio_to_dense"] == 2.0
    assert calls == dict.fromkeys(durations, 4)


def test_bench_runs_every_variant():
    from repro_cartesian_moe.bench import ffn_step_functions

    steps = ffn_step_functions(16, 32, 4, 2, 8)
    assert set(steps) == {"dense", *VARIANTS}
    for step in steps.values():
        step()
