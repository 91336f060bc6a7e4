"""The invariants of spec 1.9 against equations written out in fp64."""

import math

import pytest
import torch
import torch.nn.functional as F
from dsmoe_helpers import force_gates, small_config
from repro_core.layers import ForwardState, SwiGLUMLP
from repro_dsmoe.modeling import DSMoEConfig, DSMoEForCausalLM, DSMoEMLP, set_tau


def make_mlp(seed=0, router_std=0.5, **overrides) -> DSMoEMLP:
    torch.manual_seed(seed)
    mlp = DSMoEMLP(small_config(**overrides)).double()
    with torch.no_grad():
        for p in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight):
            p.normal_(0, 0.3)
        mlp.router.weight.normal_(0, router_std)
    return mlp


def expert_output(mlp: DSMoEMLP, x: torch.Tensor, i: int) -> torch.Tensor:
    """o_i = (silu(x W_i) ⊙ x U_i) V_i with the block slices written out (Eqs. 6-7)."""
    f = mlp.expert_size
    w = mlp.gate_proj.weight[i * f : (i + 1) * f]  # (f, d)
    u = mlp.up_proj.weight[i * f : (i + 1) * f]
    v = mlp.down_proj.weight[:, i * f : (i + 1) * f]  # (d, f)
    return (F.silu(x @ w.T) * (x @ u.T)) @ v.T


def reference(mlp: DSMoEMLP, x: torch.Tensor, tau: float) -> torch.Tensor:
    """Eqs. 7-8 per expert in a loop: n / max(1, #active) · Σ_{q_i > τ} q_i o_i."""
    q = torch.sigmoid(x @ mlp.router.weight.T)  # (..., n)
    active = q > tau
    out = sum(
        expert_output(mlp, x, i) * (q[..., i : i + 1] * active[..., i : i + 1])
        for i in range(mlp.num_experts)
    )
    return out * mlp.num_experts / active.sum(-1, keepdim=True).clamp(min=1)


@pytest.mark.parametrize("renormalize", [True, False])
def test_all_gates_one_equals_dense_mlp(renormalize):
    mlp = make_mlp(renormalize=renormalize)
    dense = SwiGLUMLP(mlp_config := small_config()).double()
    dense.load_state_dict({k: v for k, v in mlp.state_dict().items() if "router" not in k})
    force_gates(mlp)
    x = torch.randn(3, 5, mlp_config.hidden_size, dtype=torch.float64)
    for training in (True, False):
        mlp.train(training)
        torch.testing.assert_close(mlp(x), dense(x), atol=1e-10, rtol=0)
    # Eq. 6: the experts' outputs sum to the dense FFN
    total = sum(expert_output(mlp, x, i) for i in range(mlp.num_experts))
    torch.testing.assert_close(total, dense(x), atol=1e-10, rtol=0)


def test_forward_matches_loop_over_experts():
    mlp = make_mlp().eval()
    x = torch.randn(4, 6, 16, dtype=torch.float64)
    torch.testing.assert_close(mlp(x), reference(mlp, x, 0.5), atol=1e-12, rtol=0)
    mlp.train()  # STE: forward value equals G
    torch.testing.assert_close(mlp(x), reference(mlp, x, 0.5), atol=1e-12, rtol=0)


def test_ste_forward_is_bit_exactly_hard_gate():
    mlp = make_mlp().train()
    x = torch.randn(4, 6, 16, dtype=torch.float64)
    ste = mlp(x)
    mlp.gate_mode = "hard"
    assert torch.equal(ste, mlp(x))
    q = mlp.router(x)
    assert bool(((q > 0) & (q < 1)).all())


def test_renormalisation_with_known_mask():
    mlp = make_mlp().eval()
    q = torch.tensor([0.9, 0.2, 0.1, 0.7, 0.3, 0.5, 0.05, 0.4], dtype=torch.float64)  # 2 > 0.5
    force_gates(mlp, q)
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    expected = (8 / 2) * (0.9 * expert_output(mlp, x, 0) + 0.7 * expert_output(mlp, x, 3))
    torch.testing.assert_close(mlp(x), expected, atol=1e-12, rtol=0)


def test_token_with_no_active_expert_gives_zero_without_nan():
    mlp = make_mlp().train()
    force_gates(mlp, torch.full((8,), 0.3, dtype=torch.float64))
    x = torch.randn(2, 3, 16, dtype=torch.float64, requires_grad=True)
    out = mlp(x)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def one_token_grads(gate_mode: str):
    mlp = make_mlp(seed=3, router_std=0.6, gate_mode=gate_mode).train()
    torch.manual_seed(1)
    x = torch.randn(1, 1, 16, dtype=torch.float64)
    q = torch.sigmoid(x @ mlp.router.weight.T)[0, 0]
    assert (q <= 0.5).any() and (q > 0.5).any(), "test input needs active and inactive experts"
    c = torch.randn(16, dtype=torch.float64)
    (mlp(x) * c).sum().backward()  # no state: LM-like loss only
    return mlp, x[0, 0], q, c


def test_ste_router_gradient_of_inactive_expert_matches_eq16():
    mlp, x, q, c = one_token_grads("ste")
    n, active = mlp.num_experts, q > 0.5
    scale = n / int(active.sum())
    f = mlp.expert_size
    for i in torch.nonzero(~active).flatten().tolist():
        o_i = expert_output(mlp, x, i)  # (d,)
        # Eq. 16: dL/dY_i = x · (c · o_i) σ'(x Y_i), times the Eq. 8 scale (constant)
        expected = x * (c @ o_i) * q[i] * (1 - q[i]) * scale
        torch.testing.assert_close(mlp.router.weight.grad[i], expected, atol=1e-12, rtol=1e-10)
        assert mlp.router.weight.grad[i].abs().max() > 0
        block = slice(i * f, (i + 1) * f)
        assert torch.count_nonzero(mlp.gate_proj.weight.grad[block]) == 0
        assert torch.count_nonzero(mlp.up_proj.weight.grad[block]) == 0
        assert torch.count_nonzero(mlp.down_proj.weight.grad[:, block]) == 0


def test_without_ste_inactive_routers_get_no_gradient():
    mlp, _, q, _ = one_token_grads("hard")
    grad = mlp.router.weight.grad
    assert torch.count_nonzero(grad[q <= 0.5]) == 0
    assert torch.count_nonzero(grad[q > 0.5]) > 0


@pytest.mark.parametrize("target", ["G", "S"])
def test_sparsity_loss_is_mean_of_gates_and_its_gradient_target(target):
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config(sparsity_on=target)).double().train()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.router.weight.normal_(0, 0.5)
    ids = torch.randint(0, 48, (2, 7))
    gates = []
    hooks = [
        layer.mlp.router.register_forward_hook(lambda m, a, out: gates.append(out))
        for layer in model.model.layers
    ]
    out = model(input_ids=ids, labels=ids)
    for h in hooks:
        h.remove()
    g = torch.stack([q * (q > 0.5) for q in gates])  # (L, B, T, n) G(q)
    loss = out.aux_losses["dsmoe_sparsity"]
    torch.testing.assert_close(loss, g.mean(), atol=1e-12, rtol=0)
    assert 0 <= float(loss.detach()) < 1
    # gradient of one layer's sparsity term w.r.t. its gate values (the layer alone, so that
    # nothing flows through later layers)
    mlp = model.model.layers[0].mlp
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    seen = []
    h = mlp.router.register_forward_hook(lambda m, a, out: seen.append(out))
    state = ForwardState()
    mlp(x, state)
    h.remove()
    q = seen[0]
    (grad,) = torch.autograd.grad(state.aux_losses["dsmoe_sparsity"], q)
    assert (q <= 0.5).any() and (q > 0.5).any()
    if target == "G":  # Eq. 19 on G: only active gates are pushed down
        assert torch.count_nonzero(grad[q <= 0.5]) == 0
        assert torch.count_nonzero(grad[q > 0.5]) == int((q > 0.5).sum())
    else:  # through S every gate gets the same push
        assert torch.count_nonzero(grad) == grad.numel()


def test_eval_uses_hard_gate_even_for_soft_training():
    mlp = make_mlp(gate_mode="soft")
    x = torch.randn(3, 4, 16, dtype=torch.float64)
    mlp.eval()
    torch.testing.assert_close(mlp(x), reference(mlp, x, 0.5), atol=1e-12, rtol=0)
    mlp.train()  # Eq. 20 in training: q_i for every expert, renormalised by the hard count
    q = torch.sigmoid(x @ mlp.router.weight.T)
    soft = sum(expert_output(mlp, x, i) * q[..., i : i + 1] for i in range(8))
    soft = soft * 8 / (q > 0.5).sum(-1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(mlp(x), soft, atol=1e-12, rtol=0)


def test_sparse_path_equals_masked_path_and_counts_skipped_experts():
    mlp = make_mlp().eval()
    x = torch.randn(4, 9, 16, dtype=torch.float64)
    mlp.record_stats = True
    masked = mlp(x)
    mlp.inference_path = "sparse"
    sparse = mlp(x)
    torch.testing.assert_close(sparse, masked, atol=1e-12, rtol=0)
    q = torch.sigmoid(x @ mlp.router.weight.T)
    expected_active = float((q > 0.5).sum()) / 36
    assert mlp.stats.tokens == 72
    assert mlp.stats.mean_active == pytest.approx(expected_active)
    assert 0 < expected_active < 8  # some experts skipped, some used


def test_active_count_is_non_increasing_in_tau():
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config()).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.router.weight.normal_(0, 0.5)
    ids = torch.randint(0, 48, (2, 16))
    counts = []
    for tau in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.95):
        set_tau(model, eval_tau=tau)
        for layer in model.model.layers:
            layer.mlp.stats.reset()
            layer.mlp.record_stats = True
        model(input_ids=ids)
        counts.append(sum(layer.mlp.stats.mean_active for layer in model.model.layers))
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert counts[0] == 16 and counts[-1] < counts[0]


def test_router_init_zeros_gives_half_gates():
    model = DSMoEForCausalLM(small_config(router_init="zeros", tau=0.49))
    for layer in model.model.layers:
        assert torch.count_nonzero(layer.mlp.router.weight) == 0
    x = torch.randn(2, 3, 16)
    assert torch.equal(model.model.layers[0].mlp.router(x), torch.full((2, 3, 8), 0.5))


def test_router_computed_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = DSMoEForCausalLM(small_config()).train()
    ids = torch.randint(0, 48, (2, 8))
    gates = []
    h = model.model.layers[0].mlp.router.register_forward_hook(
        lambda m, a, out: gates.append((a[0], out))
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=ids)
    h.remove()
    x, q = gates[0]
    assert q.dtype == torch.float32
    expected = torch.sigmoid(x.float() @ model.model.layers[0].mlp.router.weight.T)
    torch.testing.assert_close(q, expected, atol=1e-6, rtol=0)
    assert math.isfinite(float(out.loss.detach()))
    out.loss.backward()
    assert model.model.layers[0].mlp.router.weight.grad.abs().sum() > 0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple of num_experts"):
        small_config(intermediate_size=30)
    with pytest.raises(ValueError, match="gate_mode"):
        small_config(gate_mode="straight")
    with pytest.raises(ValueError, match="tau"):
        small_config(tau=1.5)
    assert isinstance(small_config(), DSMoEConfig)
