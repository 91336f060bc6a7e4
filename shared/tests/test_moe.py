"""Invariants of repro_core.moe, in the style of megablocks' dMoE tests.

References are computed another way: the core's dense SwiGLU MLP, and a per-token Python loop
that routes with its own softmax/sigmoid + sort and applies each selected expert as matvecs.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from repro_core.layers import ForwardState
from repro_core.modeling import count_parameters as count_model_parameters
from repro_core.moe import (
    MASKED_LOGIT,
    MoEFeedForward,
    TokenTableRouter,
    TopKRouter,
    count_block_parameters,
    expert_load,
    hash_token_expert_mask,
    load_balancing_loss,
    random_token_expert_mask,
    report_aux,
    router_z_loss,
    set_disable_top1,
    swiglu_mlp,
)

D = 12


def make_moe(num_experts, top_k, *, seed=0, dtype=torch.float64, **kwargs):
    torch.manual_seed(seed)
    # A larger init than the default so routing, weights and gradients are far from zero.
    return MoEFeedForward(D, num_experts, 10, top_k, init_std=0.3, **kwargs).to(dtype)


def loop_reference(moe: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Route and combine token by token, expert by expert (no dispatch, no top-k op)."""
    router, experts = moe.router, moe.experts
    f = experts.expert_hidden_size
    outputs = []
    for token in x.reshape(-1, D):
        logits = router.weight @ token  # (E,)
        if router.score_func == "softmax":
            scores = torch.exp(logits - logits.max())
            scores = scores / scores.sum()
        else:
            scores = 1.0 / (1.0 + torch.exp(-logits))
        ranked = sorted(range(moe.num_experts), key=lambda e: -scores[e].item())
        chosen = ranked[: moe.top_k]
        total = sum(scores[e] for e in chosen)
        out = torch.zeros_like(token)
        for e in chosen:
            gate = experts.gate_up_proj[e, :f] @ token
            up = experts.gate_up_proj[e, f:] @ token
            hidden = gate * torch.sigmoid(gate) * up
            weight = scores[e] / total if router.renormalize else scores[e]
            out = out + weight * (experts.down_proj[e] @ hidden)
        if moe.shared_expert is not None:
            mlp = moe.shared_expert
            shared = mlp.down_proj.weight @ (
                F.silu(mlp.gate_proj.weight @ token) * (mlp.up_proj.weight @ token)
            )
            shared = shared * moe.shared_expert_scale
            if moe.coefficient is not None:
                c = torch.softmax(moe.coefficient.weight @ token + moe.coefficient.bias, -1)
                out = c[0] * out + c[1] * shared
            else:
                out = out + shared
        outputs.append(out)
    return torch.stack(outputs).reshape(x.shape)


def grads(module, x, out, probe):
    params = [x, *module.parameters()]
    return torch.autograd.grad((out * probe).sum(), params, allow_unused=True)


def test_one_expert_equals_dense_mlp():
    moe = make_moe(1, 1)
    dense = swiglu_mlp(D, 10).double()
    f = moe.experts.expert_hidden_size
    with torch.no_grad():
        dense.gate_proj.weight.copy_(moe.experts.gate_up_proj[0, :f])
        dense.up_proj.weight.copy_(moe.experts.gate_up_proj[0, f:])
        dense.down_proj.weight.copy_(moe.experts.down_proj[0])
    x = torch.randn(3, 5, D, dtype=torch.float64, requires_grad=True)
    out, aux = moe(x)
    torch.testing.assert_close(out, dense(x), rtol=0, atol=1e-12)
    assert torch.all(aux.router.weights == 1.0)
    (gx_moe,) = torch.autograd.grad(out.sum(), x)
    (gx_dense,) = torch.autograd.grad(dense(x).sum(), x)
    torch.testing.assert_close(gx_moe, gx_dense, rtol=0, atol=1e-12)


SETTINGS = [
    # num_experts, top_k, renormalize, score_func, shared (width, mix, scale)
    (4, 1, None, "softmax", None),
    (4, 2, None, "softmax", None),
    (8, 3, False, "softmax", None),
    (6, 6, None, "softmax", None),
    (6, 2, True, "sigmoid", None),
    (8, 1, None, "sigmoid", None),
    (8, 2, None, "softmax", (7, "coef", 1.0)),
    (5, 2, None, "softmax", (14, "add", 0.5)),
]


@pytest.mark.parametrize("num_experts,top_k,renormalize,score_func,shared", SETTINGS)
def test_dropless_dispatch_matches_loop_reference(
    num_experts, top_k, renormalize, score_func, shared
):
    extra = {}
    if shared:
        width, mix, scale = shared
        extra = dict(shared_expert_hidden_size=width, shared_mix=mix, shared_expert_scale=scale)
    moe = make_moe(
        num_experts, top_k, renormalize=renormalize, score_func=score_func, seed=top_k, **extra
    )
    x = torch.randn(2, 9, D, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, 9, D, dtype=torch.float64)
    out, _ = moe(x)
    ref = loop_reference(moe, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads(moe, x, out, probe), grads(moe, x, ref, probe)):
        if want is None:  # a parameter the reference never touches must get no gradient
            assert got is None or torch.all(got == 0)
        else:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_every_expert_gets_a_gradient_even_when_unused():
    moe = make_moe(8, 1)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[3, 0] = 10.0  # x[..., 0] > 0 below: every token picks expert 3
    x = torch.randn(16, D, dtype=torch.float64).abs()
    out, aux = moe(x)
    assert torch.all(aux.router.indices == 3)
    out.sum().backward()
    grad = moe.experts.gate_up_proj.grad
    assert grad is not None and grad[3].abs().sum() > 0
    assert torch.all(grad[torch.arange(8) != 3] == 0)


def test_uniform_routing_balancing_loss_is_one_and_collapse_is_num_experts():
    e, n = 4, 8
    uniform = torch.full((n, e), 1.0 / e)
    balanced_ids = (torch.arange(n * 2) % e).reshape(n, 2)
    assert load_balancing_loss(uniform, balanced_ids, e).item() == pytest.approx(1.0)
    collapsed = torch.zeros(n, e)
    collapsed[:, 0] = 1.0
    one_id = torch.zeros(n, 1, dtype=torch.long)
    assert load_balancing_loss(collapsed, one_id, e).item() == pytest.approx(e)


def test_imbalanced_routing_scores_higher_balancing_loss():
    x = torch.randn(64, D, dtype=torch.float64).abs()
    balanced = make_moe(4, 1)
    with torch.no_grad():  # tokens split over the experts by which feature is largest
        balanced.router.weight.copy_(torch.eye(4, D, dtype=torch.float64) * 5.0)
    imbalanced = make_moe(4, 1)
    with torch.no_grad():
        imbalanced.router.weight.zero_()
        imbalanced.router.weight[0] = 1.0  # every token prefers expert 0
    _, aux_b = balanced(x)
    _, aux_i = imbalanced(x)
    assert aux_i.load.max_over_mean.item() == pytest.approx(4.0)
    assert aux_b.load.max_over_mean.item() < 2.0
    assert aux_i.load_balancing_loss.item() > aux_b.load_balancing_loss.item() + 0.5
    # The loss is differentiable w.r.t. the router.
    (g,) = torch.autograd.grad(aux_i.load_balancing_loss, imbalanced.router.weight)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("masked_value", [-math.inf, torch.finfo(torch.float32).min])
def test_masked_experts_get_zero_weight_and_zero_gradient(masked_value):
    e, k, n = 6, 2, 40
    moe = make_moe(e, k, shared_expert_hidden_size=5, shared_mix="coef")
    gen = torch.Generator().manual_seed(3)
    visible = torch.rand(n, e, generator=gen) < 0.5
    visible[:, 5] = False  # expert 5 is masked for every token
    visible[torch.arange(n), torch.randint(0, 5, (n,), generator=gen)] = True  # >= 1 visible
    visible[0] = False
    visible[0, 2] = True  # token 0 sees a single expert although k = 2
    mask = torch.zeros(n, e, dtype=torch.float64).masked_fill(~visible, masked_value)
    x = torch.randn(n, D, dtype=torch.float64)
    out, aux = moe(x, logit_mask=mask)
    route = aux.router
    route.logits.retain_grad()
    assert torch.all(route.scores[~visible] == 0)
    chosen = route.indices >= 0
    assert torch.all(visible.gather(1, route.indices.clamp_min(0))[chosen])
    assert route.indices[0].tolist() == [2, -1] and route.weights[0].tolist() == [1.0, 0.0]
    assert torch.all(route.weights[~chosen] == 0)
    loss = out.pow(2).sum() + aux.load_balancing_loss + aux.z_loss
    loss.backward()
    assert torch.all(route.logits.grad[~visible] == 0)
    assert torch.all(moe.router.weight.grad[5] == 0)
    assert torch.all(moe.experts.gate_up_proj.grad[5] == 0)
    assert torch.all(moe.experts.down_proj.grad[5] == 0)
    assert all(torch.isfinite(p.grad).all() for p in moe.parameters())
    assert aux.load.tokens_per_expert[5] == 0
    assert aux.load.tokens_per_expert.sum() == chosen.sum()


def test_z_loss_equals_its_formula():
    moe = make_moe(5, 2)
    x = torch.randn(7, D, dtype=torch.float64)
    _, aux = moe(x)
    logits = x @ moe.router.weight.T
    expected = torch.log(torch.exp(logits).sum(-1)).pow(2).mean()
    torch.testing.assert_close(aux.z_loss, expected)
    torch.testing.assert_close(router_z_loss(logits), expected)


def test_load_stats_sum_to_routed_token_count():
    moe = make_moe(6, 2)
    x = torch.randn(4, 10, D, dtype=torch.float64)
    token_mask = torch.ones(4, 10, dtype=torch.bool)
    token_mask[:, 7:] = False  # padding
    _, aux = moe(x)
    counts = aux.load.tokens_per_expert
    assert counts.sum().item() == 4 * 10 * 2
    assert aux.load.fraction.sum().item() == pytest.approx(1.0)
    assert aux.load.cv.item() == pytest.approx((counts.std(unbiased=False) / counts.mean()).item())
    assert aux.load.max_over_mean.item() == pytest.approx((counts.max() / counts.mean()).item())
    _, masked = moe(x, token_mask=token_mask)
    assert masked.load.tokens_per_expert.sum().item() == 4 * 7 * 2
    direct = expert_load(masked.router.indices, 6, token_mask.reshape(-1))
    assert torch.equal(direct.tokens_per_expert, masked.load.tokens_per_expert)


def test_top1_weight_is_raw_probability_and_topk_weights_sum_to_one():
    x = torch.randn(20, D, dtype=torch.float64)
    _, aux1 = make_moe(6, 1)(x)
    torch.testing.assert_close(aux1.router.weights[:, 0], aux1.router.scores.max(-1).values)
    _, aux3 = make_moe(6, 3)(x)
    torch.testing.assert_close(aux3.router.weights.sum(-1), torch.ones(20, dtype=torch.float64))


def test_disable_top1_routes_to_the_next_best_experts():
    moe = make_moe(6, 2)
    x = torch.randn(30, D, dtype=torch.float64)
    _, normal = moe(x)
    assert set_disable_top1(moe, True) == 1
    _, disabled = moe(x)
    ranked = normal.router.scores.argsort(-1, descending=True)
    assert torch.equal(disabled.router.indices.sort(-1).values, ranked[:, 1:3].sort(-1).values)
    set_disable_top1(moe, False)
    _, again = moe(x)
    assert torch.equal(again.router.indices, normal.router.indices)


def test_router_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    router = TopKRouter(D, 4, 2)
    x = torch.randn(5, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        route = router(x)
    assert route.logits.dtype == torch.float32 and route.weights.dtype == torch.float32


@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
def test_moe_layer_routes_and_mixes_in_fp32_under_bf16_autocast(input_dtype):
    """Router logits, probabilities, weights and the routed/shared mixing gate are fp32 and
    finite under bf16 autocast, while the experts run in bf16; the output stays close to fp32."""
    torch.manual_seed(0)
    moe = MoEFeedForward(D, 6, 10, 2, shared_expert_hidden_size=8, shared_mix="coef")
    x = torch.randn(40, D)
    reference, _ = moe(x)
    gates = []
    mix = moe.mix_coefficients
    moe.mix_coefficients = lambda tokens: gates.append(mix(tokens)) or gates[-1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, aux = moe(x.to(input_dtype))
    route = aux.router
    for name in ("logits", "scores", "weights"):
        value = getattr(route, name)
        assert value.dtype == torch.float32, name
        assert bool(torch.isfinite(value).all()), name
    assert gates[0].dtype == torch.float32 and bool(torch.isfinite(gates[0]).all())
    torch.testing.assert_close(gates[0].sum(-1), torch.ones(40))
    assert y.dtype == input_dtype  # the output keeps the input dtype
    assert bool(torch.isfinite(aux.load_balancing_loss)) and bool(torch.isfinite(aux.z_loss))
    torch.testing.assert_close(y.float(), reference, rtol=0.05, atol=0.02)


def test_activated_parameter_count():
    moe = MoEFeedForward(D, 8, 10, 2, shared_expert_hidden_size=6, shared_mix="coef")
    router, expert, shared, coef = 8 * D, 3 * D * 10, 3 * D * 6, 2 * D + 2
    assert count_block_parameters(moe) == router + 8 * expert + shared + coef
    assert count_block_parameters(moe, activated=True) == router + 2 * expert + shared + coef
    dense = swiglu_mlp(D, 30)
    container = torch.nn.ModuleList([moe, dense])
    assert count_block_parameters(container, activated=True) == (
        moe.num_activated_parameters() + 3 * D * 30
    )
    # The core's model-level counter reads the same hook.
    counts = count_model_parameters(container)
    assert counts["activated"] == count_block_parameters(container, activated=True)
    assert counts["total"] == count_block_parameters(container)


def test_report_aux_weights_losses_into_forward_state():
    moe = make_moe(4, 2)
    state = ForwardState()
    for _ in range(2):  # two layers
        _, aux = moe(torch.randn(6, D, dtype=torch.float64))
        report_aux(state, aux, load_balancing_coef=0.01, z_loss_coef=0.001)
    assert set(state.aux_losses) == {"moe_load_balancing", "moe_z_loss"}
    lb = sum(a.load_balancing_loss for a in state.shared["moe_aux"])
    torch.testing.assert_close(state.aux_losses["moe_load_balancing"], 0.01 * lb)


@pytest.mark.parametrize("top_p,cap", [(0.4, 8), (0.75, 8), (0.5, 2), (1.0, 8)])
def test_top_p_routing_matches_a_per_token_loop(top_p, cap):
    """Top-p routing against a per-token loop over the sorted probabilities: experts are kept
    until their running sum reaches p (the crossing one included, at most ``cap``), with their
    raw probabilities as weights; the dispatch equals the loop over experts."""
    torch.manual_seed(0)
    moe = MoEFeedForward(16, 8, 12, cap, top_p=top_p, init_std=0.5).double()
    x = torch.randn(40, 16, dtype=torch.float64)
    route = moe.router(x)
    probs = torch.softmax(x @ moe.router.weight.T, dim=-1).detach()
    ref_out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        order = torch.argsort(probs[n], descending=True).tolist()
        chosen, total = [], 0.0
        for e in order[:cap]:
            chosen.append(e)
            total += float(probs[n, e])
            if total >= top_p:
                break
        got = [int(i) for i in route.indices[n] if i >= 0]
        assert got == chosen, (n, got, chosen)
        w = route.weights[n, : len(chosen)]
        torch.testing.assert_close(w, probs[n, chosen])  # raw, not renormalised
        assert bool((route.weights[n, len(chosen) :] == 0).all())
        for e, we in zip(chosen, w):
            ref_out[n] += we.detach() * moe.experts.expert_forward(e, x[n : n + 1])[0].detach()
    torch.testing.assert_close(moe.experts(x, route.indices, route.weights), ref_out)
    counts = (route.indices >= 0).sum(-1)
    assert int(counts.min()) >= 1 and int(counts.max()) <= cap
    if top_p < 1.0 and cap == 8:
        assert int(counts.max()) > int(counts.min())  # variable number of experts per token


def test_top_p_rejects_sigmoid_and_out_of_range():
    with pytest.raises(ValueError, match="top_p"):
        TopKRouter(8, 4, 4, score_func="sigmoid", top_p=0.5)
    with pytest.raises(ValueError, match="top_p"):
        TopKRouter(8, 4, 4, top_p=0.0)


# --------------------------------------------------------------------------------------------
# Per-token-id expert masks: Hash Layer and MaskMoE routing


def test_random_token_expert_mask_rows_have_exactly_the_requested_visible_experts():
    vocab, e = 500, 8
    gen = torch.Generator().manual_seed(0)
    visible = torch.randint(1, e + 1, (vocab,), generator=gen)
    table = random_token_expert_mask(visible, e, seed=7)
    assert table.shape == (vocab, e) and table.dtype == torch.float32
    assert set(table.unique().tolist()) <= {0.0, MASKED_LOGIT}
    assert torch.equal((table == 0).sum(-1), visible)
    assert torch.equal(table, random_token_expert_mask(visible, e, seed=7))  # seeded
    assert not torch.equal(table, random_token_expert_mask(visible, e, seed=8))
    # Uniform draw: with one visible expert each, every expert gets about vocab / E ids.
    hashed = hash_token_expert_mask(4000, e, seed=1)
    per_expert = (hashed == 0).sum(0).double()
    assert per_expert.sum() == 4000
    chi2 = ((per_expert - 500.0) ** 2 / 500.0).sum().item()
    assert chi2 < 24.3  # 99.9% quantile of chi-square with 7 degrees of freedom
    with pytest.raises(ValueError, match="visible_experts"):
        random_token_expert_mask(torch.tensor([0, 1]), e, seed=0)


def test_hash_router_matches_a_per_token_table_lookup_and_ignores_router_weights():
    vocab, e = 30, 5
    moe = make_moe(e, 1, token_expert_mask=hash_token_expert_mask(vocab, e, seed=3))
    ids = torch.randint(0, vocab, (4, 7))
    x = torch.randn(4, 7, D, dtype=torch.float64)
    out, aux = moe(x, token_ids=ids)
    table = hash_token_expert_mask(vocab, e, seed=3)
    expected = torch.zeros_like(x)
    for b in range(4):  # reference: find each id's expert in the table by scanning its row
        for t in range(7):
            expert = [i for i in range(e) if table[ids[b, t], i] == 0]
            assert len(expert) == 1
            expected[b, t] = moe.experts.expert_forward(expert[0], x[b, t][None])[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert torch.all(aux.router.weights[:, 0] == 1.0)
    # The output does not depend on the router weights, which get no gradient from it.
    (out.pow(2).sum() + aux.load_balancing_loss).backward()
    assert torch.all(moe.router.weight.grad == 0)
    with torch.no_grad():
        moe.router.weight.normal_(std=5.0)
    again, _ = moe(x, token_ids=ids)
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_token_expert_mask_equals_the_explicit_logit_mask_and_respects_k_above_visible():
    vocab, e, k = 20, 6, 3
    visible = torch.tensor([1, 2, 3, 6] * 5)
    table = random_token_expert_mask(visible, e, seed=0)
    with_table = make_moe(e, k, token_expert_mask=table)
    plain = make_moe(e, k)
    ids = torch.randint(0, vocab, (50,))
    x = torch.randn(50, D, dtype=torch.float64)
    explicit = torch.stack([table[int(i)] for i in ids]).double()  # (N, E), one row per token
    out_t, aux_t = with_table(x, token_ids=ids)
    out_p, aux_p = plain(x, logit_mask=explicit)
    torch.testing.assert_close(out_t, out_p, rtol=0, atol=0)
    assert torch.equal(aux_t.router.indices, aux_p.router.indices)
    used = aux_t.router.indices >= 0
    assert torch.equal(used.sum(-1), visible[ids].clamp(max=k))  # k_eff = min(k, V_t)
    chosen_visible = explicit.gather(1, aux_t.router.indices.clamp_min(0)) == 0
    assert torch.all(chosen_visible[used])
    assert torch.all(aux_t.router.scores[explicit != 0] == 0)


def test_token_expert_mask_is_a_saved_non_trainable_buffer_and_needs_token_ids():
    table = hash_token_expert_mask(11, 4, seed=0)
    moe = MoEFeedForward(D, 4, 10, 1, token_expert_mask=table)
    assert "router.token_expert_mask" in moe.state_dict()
    assert all(p is not moe.router.token_expert_mask for p in moe.parameters())
    fresh = MoEFeedForward(D, 4, 10, 1, token_expert_mask=hash_token_expert_mask(11, 4, seed=9))
    fresh.load_state_dict(moe.state_dict())
    assert torch.equal(fresh.router.token_expert_mask, table)
    with pytest.raises(ValueError, match="token_ids"):
        moe(torch.randn(3, D))
    with pytest.raises(ValueError, match="num_experts"):
        TopKRouter(D, 5, 1, token_expert_mask=table)


def test_token_table_router_routes_by_a_table_row_and_matches_a_per_token_loop():
    """TokenTableRouter: logits = table[id] (no hidden state); the layer equals the loop
    reference with the router's linear logits replaced by the table rows."""
    vocab, e, k = 9, 5, 2
    router = TokenTableRouter(vocab, e, k, seed=4, std=1.0)
    moe = make_moe(e, k, router=router)  # .to(float64) casts the buffer too
    ids = torch.randint(0, vocab, (3, 4), generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 4, D, dtype=torch.float64)
    out, aux = moe(x, token_ids=ids)
    # the per-token loop with each token's table row as its router logits
    ref = torch.stack(
        [
            linear_router_reference(moe, token, router.table[token_id])
            for token, token_id in zip(x.reshape(-1, D), ids.reshape(-1), strict=True)
        ]
    ).reshape(x.shape)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    # same id -> same experts
    flat = ids.reshape(-1)
    for token_id in flat.unique():
        rows = aux.router.indices[flat == token_id]
        assert (rows == rows[0]).all()
    # one seed, one table (shared by every layer built with it); a buffer unless trainable
    assert torch.equal(TokenTableRouter(vocab, e, k, seed=4, std=1.0).table, router.table.float())
    assert [n for n, _ in router.named_parameters()] == [] and "table" in router.state_dict()
    trained = TokenTableRouter(vocab, e, k, trainable=True)
    assert [n for n, _ in trained.named_parameters()] == ["table"]
    assert count_block_parameters(trained, activated=True) == e  # one row per token
    with pytest.raises(ValueError, match="token_ids"):
        moe(x)
    with pytest.raises(ValueError, match="top_k"):
        MoEFeedForward(D, e, 10, 3, router=TokenTableRouter(vocab, e, k))


def linear_router_reference(moe, token, logits):
    """One token of :func:`loop_reference` with the given router logits."""
    experts, f = moe.experts, moe.experts.expert_hidden_size
    scores = torch.exp(logits - logits.max())
    scores = scores / scores.sum()
    chosen = sorted(range(moe.num_experts), key=lambda e: -scores[e].item())[: moe.top_k]
    total = sum(scores[e] for e in chosen)
    out = torch.zeros_like(token)
    for e in chosen:
        gate = experts.gate_up_proj[e, :f] @ token
        up = experts.gate_up_proj[e, f:] @ token
        out = out + scores[e] / total * (experts.down_proj[e] @ (gate * torch.sigmoid(gate) * up))
    return out
