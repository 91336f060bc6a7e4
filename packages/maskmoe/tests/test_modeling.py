"""MaskMoE invariants (spec §2.7) against references computed another way: per-token loops over
experts in fp64, brute-force scans of the mask rows, and the plain SMoE / Hash models."""

import numpy as np
import pytest
import torch
from repro_core.config import ConfigError
from repro_core.layers import ForwardState
from repro_core.modeling import count_parameters
from repro_core.moe import MASKED_LOGIT
from repro_maskmoe.frequency import frequent_tokens
from repro_maskmoe.modeling import (
    MaskMoEConfig,
    MaskMoEForCausalLM,
    MaskMoEModelConfig,
    record_routes,
    recorded_routes,
)
from transformers import AutoModelForCausalLM

D = 16
VOCAB = 40
SPECIAL = [0]


def zipf_counts(vocab: int = VOCAB):
    """Zipf-like training counts: id 1 most frequent, id 0 special, the last 3 ids unseen."""
    counts = [0] + [int(2000 / (i + 1)) for i in range(vocab - 1)]
    counts[-3:] = [0, 0, 0]
    return counts


def make_config(**overrides) -> MaskMoEConfig:
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_experts=4,
        moe_layer_interval=1,
        frequent_experts=2,
        frequency_threshold=0.25,
        initializer_range=0.3,  # routers far from uniform, so routing depends on context
        load_balancing_coef=0.01,
    )
    kwargs.update(overrides)
    return MaskMoEConfig(**kwargs)


def make_model(seed: int = 0, counts=None, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    model = MaskMoEForCausalLM(make_config(**overrides)).to(dtype)
    model.set_token_counts(zipf_counts() if counts is None else counts, SPECIAL)
    return model


def layer_and_ids(model, n=64, seed=0, ids=None):
    """The first MoE layer, random hidden states (1, n, D) and input ids (1, n)."""
    layer = model.moe_layers()[0]
    gen = torch.Generator().manual_seed(seed)
    if ids is None:
        ids = torch.randint(0, VOCAB, (1, n), generator=gen)
    u = torch.randn(1, ids.shape[1], D, generator=gen, dtype=torch.float64)
    return layer, u, ids


def run_layer(layer, u, ids):
    state = ForwardState(input_ids=ids)
    y = layer(u, state)
    return y, state.shared["moe_aux"][-1], state


def visible_sets(layer):
    table = layer.moe.router.token_expert_mask
    return [set(torch.nonzero(row == 0).flatten().tolist()) for row in table]


# 1. mask table ------------------------------------------------------------------------------


def test_mask_rows_have_exactly_v_t_visible_experts_and_are_deterministic_per_seed():
    model = make_model()
    frequent = frequent_tokens(np.array(zipf_counts()), "top_fraction", 0.25, SPECIAL)
    assert model.frequent_tokens.numpy().tolist() == frequent.tolist()
    assert model.config.num_frequent_tokens == frequent.sum() == 10
    for layer in model.moe_layers():
        table = layer.moe.router.token_expert_mask
        assert table.shape == (VOCAB, 4)
        assert set(table.unique().tolist()) <= {0.0, MASKED_LOGIT}
        expected = [2 if f else 1 for f in frequent]  # V_freq = 2, else 1
        assert [len(s) for s in visible_sets(layer)] == expected
        assert not table.requires_grad
        assert all(p is not table for p in model.parameters())
    again = make_model(seed=5)  # other weights, same mask seed
    other = make_model(mask_seed=1)
    tables = [layer.moe.router.token_expert_mask for layer in model.moe_layers()]
    assert torch.equal(tables[0], again.moe_layers()[0].moe.router.token_expert_mask)
    assert not torch.equal(tables[0], other.moe_layers()[0].moe.router.token_expert_mask)
    assert torch.equal(tables[0], tables[1])  # one mask shared by all MoE layers (default)
    per_layer = make_model(per_layer_mask=True).moe_layers()
    t0, t1 = (layer.moe.router.token_expert_mask for layer in per_layer)
    assert not torch.equal(t0, t1)


# 2. masked experts --------------------------------------------------------------------------


def test_masked_experts_get_zero_probability_and_gradient_and_are_never_chosen_for_k_above_v():
    model = make_model(moe_top_k=3, frequent_experts=2)  # k = 3 > V_t in {1, 2}
    layer, u, ids = layer_and_ids(model, n=80)
    y, aux, _ = run_layer(layer, u, ids)
    route = aux.router
    route.logits.retain_grad()
    hidden = layer.moe.router.token_expert_mask[ids.flatten()] != 0  # (N, E) masked experts
    assert torch.all(route.scores[hidden] == 0)
    chosen = route.indices >= 0
    assert torch.all(~hidden.gather(1, route.indices.clamp_min(0))[chosen])
    visible_count = (~hidden).sum(-1)
    assert torch.equal(chosen.sum(-1), visible_count.clamp(max=3))  # k_eff = min(k, V_t)
    (y.pow(2).sum() + aux.load_balancing_loss).backward()
    assert torch.all(route.logits.grad[hidden] == 0)
    assert route.logits.grad[~hidden].abs().sum() > 0


# 3. rare tokens -----------------------------------------------------------------------------


def test_rare_token_routes_to_one_fixed_expert_with_gate_one_and_no_router_gradient():
    model = make_model()
    rare = [t for t in range(VOCAB) if not model.frequent_tokens[t]]
    ids = torch.tensor([rare * 3])  # every rare id, three times, in random contexts
    layer, u, _ = layer_and_ids(model, ids=ids)
    u.requires_grad_(True)
    y, aux, _ = run_layer(layer, u, ids)
    sets = visible_sets(layer)
    assert aux.router.indices[:, 0].tolist() == [next(iter(sets[t])) for t in ids[0].tolist()]
    assert torch.all(aux.router.weights[:, 0] == 1.0)
    (y.pow(2).sum() + aux.load_balancing_loss).backward()
    assert torch.all(layer.moe.router.weight.grad == 0)
    assert u.grad.abs().sum() > 0  # the experts do learn from them
    # The same expert in another context and at another training step (changed router).
    with torch.no_grad():
        layer.moe.router.weight.normal_(std=3.0)
    _, aux2, _ = run_layer(layer, torch.randn_like(u), ids)
    assert torch.equal(aux2.router.indices, aux.router.indices)


# 4. frequent tokens -------------------------------------------------------------------------


def test_frequent_tokens_use_more_than_one_and_at_most_v_freq_experts_across_contexts():
    model = make_model(frequent_experts=3)
    layer = model.moe_layers()[0]
    sets = visible_sets(layer)
    for t in torch.nonzero(model.frequent_tokens).flatten().tolist()[:4]:
        ids = torch.full((1, 200), t)
        _, u, _ = layer_and_ids(model, ids=ids, seed=t)
        _, aux, _ = run_layer(layer, u, ids)
        used = set(aux.router.indices[:, 0].tolist())
        assert len(used) > 1 and len(used) <= 3 and used <= sets[t]


# 5. reductions ------------------------------------------------------------------------------


def logits_and_grads(model, ids):
    model.zero_grad()
    out = model(input_ids=ids, labels=ids, return_logits=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def test_all_tokens_frequent_with_v_freq_n_equals_plain_smoe_exactly():
    counts = [5] * VOCAB  # every id seen
    mask = make_model(
        counts=counts, frequency_threshold=1.0, frequent_experts=4, special_tokens_frequent=True
    )
    assert int(mask.frequent_tokens.sum()) == VOCAB
    smoe = make_model(counts=counts, routing="smoe")
    mask.load_state_dict(smoe.state_dict(), strict=False)  # same weights
    ids = torch.randint(0, VOCAB, (3, 12))
    logits_m, grads_m = logits_and_grads(mask, ids)
    logits_s, grads_s = logits_and_grads(smoe, ids)
    assert torch.equal(logits_m, logits_s)
    assert grads_m.keys() == grads_s.keys()
    for name in grads_s:
        assert torch.equal(grads_m[name], grads_s[name]), name


def test_no_frequent_token_equals_a_hash_router_whose_output_ignores_router_weights():
    mask = make_model(frequency_threshold=0.0)
    hashed = make_model(routing="hash")
    assert int(mask.frequent_tokens.sum()) == 0
    hashed.load_state_dict(mask.state_dict())
    ids = torch.randint(0, VOCAB, (2, 10))
    logits_m, grads_m = logits_and_grads(mask, ids)
    logits_h, _ = logits_and_grads(hashed, ids)
    assert torch.equal(logits_m, logits_h)
    for layer in mask.moe_layers():
        assert torch.all(layer.moe.router.weight.grad == 0)
        with torch.no_grad():
            layer.moe.router.weight.normal_(std=5.0)
    assert torch.equal(mask(input_ids=ids).logits, logits_m)


# 6. indexed by the input id ------------------------------------------------------------------


def test_mask_is_indexed_by_the_input_id_not_the_label():
    model = make_model(routing="hash")
    sets = visible_sets(model.moe_layers()[0])
    ids = torch.randint(0, VOCAB, (2, 16))
    record_routes(model, True)
    out = model(input_ids=ids, labels=ids, return_logits=True)
    routes = recorded_routes(model)  # (layers, B*T)
    record_routes(model, False)
    by_input = [next(iter(sets[t])) for t in ids.flatten().tolist()]
    assert routes[0].tolist() == by_input == routes[1].tolist()
    # The label at position s is the id at s+1: routing by it would differ somewhere.
    by_label = [next(iter(sets[t])) for t in ids[:, 1:].flatten().tolist()]
    assert by_label != [e for row in torch.tensor(by_input).view(2, 16) for e in row[:-1].tolist()]
    shuffled = ids[:, torch.randperm(16)]
    assert torch.equal(model(input_ids=ids, labels=shuffled, return_logits=True).logits, out.logits)


# 7. parameters ------------------------------------------------------------------------------


def test_parameter_counts_equal_smoe_and_hash():
    counts = {
        routing: count_parameters(make_model(routing=routing))
        for routing in ("maskmoe", "smoe", "hash")
    }
    assert counts["maskmoe"] == counts["smoe"] == counts["hash"]
    model = make_model()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == counts["smoe"]["total"]
    d, f, e = 16, 24, 4
    expert = 3 * d * f  # SwiGLU expert parameters; top-1 activates one expert per MoE layer
    c = counts["maskmoe"]
    assert c["activated"] == c["non_embedding"] - 2 * (e - 1) * expert  # 2 MoE layers


# 8. bf16 --------------------------------------------------------------------------------------


def test_no_nan_under_bf16_autocast_and_router_in_fp32():
    model = make_model(dtype=torch.float32)
    ids = torch.randint(0, VOCAB, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=ids, return_logits=True)
        layer, u, _ = layer_and_ids(model, ids=ids[:1])
        _, aux, _ = run_layer(layer, u.float(), ids[:1])
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert aux.router.logits.dtype == torch.float32
    assert torch.all(aux.router.scores[layer.moe.router.token_expert_mask[ids[0]] != 0] == 0)
    bf16 = make_model().to(torch.bfloat16)  # a model cast to bf16 keeps a finite mask
    assert torch.isfinite(bf16.moe_layers()[0].moe.router.token_expert_mask).all()
    assert torch.isfinite(bf16(input_ids=ids).logits).all()


# 9. dispatch against a loop over experts ------------------------------------------------------


@pytest.mark.parametrize("top_k,shared", [(1, 0), (2, 0), (2, 8)])
def test_layer_matches_a_per_token_loop_over_experts(top_k, shared):
    model = make_model(moe_top_k=top_k, frequent_experts=3, shared_expert_hidden_size=shared)
    layer, u, ids = layer_and_ids(model, n=30)
    u.requires_grad_(True)
    y, _, _ = run_layer(layer, u, ids)
    moe = layer.moe
    table = moe.router.token_expert_mask.double()
    f = moe.experts.expert_hidden_size
    rows = []
    for s in range(u.shape[1]):  # one token at a time, one expert at a time, in fp64
        x, t = u[0, s], int(ids[0, s])
        logits = moe.router.weight @ x + table[t]
        p = torch.exp(logits - logits.max())
        p = p / p.sum()
        ranked = sorted((e for e in range(4) if table[t, e] == 0), key=lambda e: -p[e].item())
        chosen = ranked[:top_k]
        total = sum(p[e] for e in chosen)
        out = torch.zeros_like(x)
        for e in chosen:
            gate = moe.experts.gate_up_proj[e, :f] @ x
            up = moe.experts.gate_up_proj[e, f:] @ x
            h = gate * torch.sigmoid(gate) * up
            w = p[e] / total if top_k > 1 else p[e]
            out = out + w * (moe.experts.down_proj[e] @ h)
        if moe.shared_expert is not None:
            mlp = moe.shared_expert
            g = mlp.gate_proj.weight @ x
            out = out + mlp.down_proj.weight @ (g * torch.sigmoid(g) * (mlp.up_proj.weight @ x))
        rows.append(out)
    ref = torch.stack(rows)[None]
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)
    probe = torch.randn_like(y)
    params = [u, moe.router.weight, moe.experts.gate_up_proj, moe.experts.down_proj]
    got = torch.autograd.grad((y * probe).sum(), params, retain_graph=True)
    want = torch.autograd.grad((ref * probe).sum(), params)
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)


# save / load, generate, training ----------------------------------------------------------


def test_save_load_round_trip_keeps_mask_counts_and_outputs(tmp_path):
    model = make_model(dtype=torch.float32, per_layer_mask=True)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, MaskMoEForCausalLM)
    assert loaded.config.num_frequent_tokens == model.config.num_frequent_tokens
    assert torch.equal(loaded.token_counts, model.token_counts)
    assert torch.equal(loaded.frequent_tokens, model.frequent_tokens)
    for a, b in zip(model.moe_layers(), loaded.moe_layers()):
        assert torch.equal(a.moe.router.token_expert_mask, b.moe.router.token_expert_mask)
    ids = torch.randint(0, VOCAB, (2, 9))
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_generate_with_cache_equals_generate_without():
    model = make_model(dtype=torch.float32).eval()
    prompt = torch.randint(0, VOCAB, (2, 5))
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = model.generate(prompt, use_cache=True, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert cached.shape == (2, 11)
    assert torch.equal(cached, uncached)


def test_a_few_training_steps_lower_the_loss():
    model = make_model(dtype=torch.float32, initializer_range=0.02)
    ids = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        out = model(input_ids=ids, labels=ids, return_logits=True)
        losses.append(out.lm_loss.item())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert set(out.aux_losses) == {"moe_load_balancing"}
    assert losses[-1] < losses[0] - 0.5


def test_mask_must_be_built_before_use_and_build_needs_counts():
    torch.manual_seed(0)
    model = MaskMoEForCausalLM(make_config())
    with pytest.raises(RuntimeError, match="set_token_counts"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="model.token_counts"):
        MaskMoEModelConfig(hidden_size=16, num_attention_heads=2).build(VOCAB, 32)
    with pytest.raises(ConfigError, match="model.frequent_experts"):
        MaskMoEModelConfig(num_experts=4, frequent_experts=5)
    with pytest.raises(ValueError, match="input token ids"):
        make_model()(inputs_embeds=torch.randn(1, 3, D, dtype=torch.float64))
