"""The Hash Layer baseline (``hash_share``, spec §1.4 and §1.7): a per-token-id score table
replaces the router logits, top-2, plus a shared expert. Checked against a loop over tokens and
experts in fp64, for routing by id only, for the fixed/trained table switch, for its parameter
count against SMoE-Share by hand, through a save/load round trip and the evaluation's load
statistics (counted again from the table itself)."""

import math

import pytest
import torch
from repro_cartesian_moe import evaluate as cmoe_eval
from repro_cartesian_moe.layers import build_ffn, run_ffn
from repro_cartesian_moe.modeling import (
    CartesianMoEConfig,
    CartesianMoEForCausalLM,
    CartesianMoEModelConfig,
)
from repro_core.config import ConfigError, load_config, package_preset_dirs
from repro_core.layers import ForwardState
from repro_core.modeling import count_parameters
from repro_core.moe import TokenTableRouter
from repro_core.train import reset_accelerate
from transformers import AutoModelForCausalLM

VOCAB = 23
D, W, N, MOE_LAYERS = 32, 64, 4, 2


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    reset_accelerate()


def hash_model(hash_table="fixed", seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=W,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=64,
        moe_variant="hash_share",
        num_experts=N,
        hash_table=hash_table,
        initializer_range=0.5,  # a spread-out table: top-2 weights far from 1/2 each
    )
    kwargs.update(overrides)
    return CartesianMoEForCausalLM(CartesianMoEConfig(**kwargs)).eval()


def ids(batch=2, length=12, seed=1):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def routers(model):
    return [m for m in model.modules() if isinstance(m, TokenTableRouter)]


@pytest.mark.parametrize("hash_table", ["fixed", "trained"])
def test_hash_share_block_equals_loop_over_tokens_and_experts_fp64(hash_table):
    torch.manual_seed(0)
    block = build_ffn("hash_share", 8, 16, 4, vocab_size=VOCAB, hash_table=hash_table,
                      init_std=0.7).double()  # fmt: skip
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    token_ids = ids(2, 5)
    out, (aux,) = run_ffn(block, x, torch.zeros_like(x), token_ids=token_ids)

    table = block.router.table.detach().double()
    gate_up, down = block.experts.gate_up_proj, block.experts.down_proj  # (E, 2F, D), (E, D, F)
    shared, coef = block.shared_expert, block.coefficient

    def swiglu(z, w_gate, w_up, w_down):
        g = w_gate @ z
        return w_down @ (g / (1 + torch.exp(-g)) * (w_up @ z))

    expected = torch.zeros_like(x)
    for b in range(2):
        for t in range(5):
            z, row = x[b, t], table[int(token_ids[b, t])]
            probs = [math.exp(float(v)) for v in row]
            probs = [p / sum(probs) for p in probs]
            top = sorted(range(4), key=lambda e: -probs[e])[:2]
            routed = torch.zeros(8, dtype=torch.float64)
            for e in top:
                weight = probs[e] / sum(probs[i] for i in top)
                routed += weight * swiglu(z, gate_up[e, :16], gate_up[e, 16:], down[e])
            s = swiglu(z, shared.gate_proj.weight, shared.up_proj.weight, shared.down_proj.weight)
            c = torch.softmax(coef.weight @ z + coef.bias, dim=0)
            expected[b, t] = c[0] * routed + c[1] * s
            assert sorted(aux.router.indices[b * 5 + t].tolist()) == sorted(top)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_hash_routing_depends_only_on_the_token_id():
    """The same id routes to the same experts with the same weights in every context and
    every MoE layer (one seeded table, as the official code's single table); the linear router
    of SMoE-Share does not."""
    model = hash_model()
    seen = []
    for r in routers(model):
        r.register_forward_hook(lambda _m, _a, out: seen.append(out))
    x = ids(batch=3, length=16, seed=4)
    x[0, 3], x[1, 10], x[2, 0] = 7, 7, 7  # id 7 at different positions and contexts
    model(input_ids=x)
    assert len(seen) == MOE_LAYERS
    flat = x.reshape(-1)
    for route in seen:
        for token in flat.unique():
            rows = flat == token
            assert (route.indices[rows] == route.indices[rows][0]).all()
            torch.testing.assert_close(route.weights[rows], route.weights[rows][:1].expand_as(
                route.weights[rows]), rtol=0, atol=0)  # fmt: skip
    torch.testing.assert_close(seen[0].indices, seen[1].indices, rtol=0, atol=0)
    # the hidden states of id 7 differ between its contexts, so routing ignores them
    share = hash_model(moe_variant="smoe_share")
    state = ForwardState(input_ids=x)
    share.model(input_ids=x, state=state)
    share_routes = state.shared["moe_aux"][0].router.indices
    picks = {tuple(share_routes[i].tolist()) for i in (flat == 7).nonzero().flatten()}
    assert len(picks) > 1


def test_fixed_table_is_a_buffer_without_gradient_and_a_trained_one_learns():
    for hash_table in ("fixed", "trained"):
        model = hash_model(hash_table).train()
        tables = [r.table for r in routers(model)]
        params = {id(p) for p in model.parameters()}
        x = ids()
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        if hash_table == "fixed":
            assert all(id(t) not in params and not t.requires_grad for t in tables)
            assert all(t.grad is None for t in tables)
            assert any(n.endswith("router.table") for n, _ in model.named_buffers())
        else:
            assert all(id(t) in params for t in tables)
            # rows of the ids in the batch get a gradient, the others none
            grad = tables[0].grad
            used = torch.zeros(VOCAB, dtype=torch.bool)
            used[x.unique()] = True
            assert grad[used].abs().sum(-1).min() > 0
            assert grad[~used].abs().max() == 0


def test_hash_share_parameter_count_against_smoe_share_by_hand():
    """hash_share = smoe_share with each MoE layer's N·D router weights replaced by a V·N
    table: in parameters when trained (one row, N, activated per token), in a buffer when
    fixed (no parameters)."""
    share = count_parameters(hash_model(moe_variant="smoe_share"))
    fixed = count_parameters(hash_model("fixed"))
    trained = count_parameters(hash_model("trained"))
    router, table = N * D, VOCAB * N
    assert fixed["total"] == share["total"] - MOE_LAYERS * router
    assert fixed["activated"] == share["activated"] - MOE_LAYERS * router
    assert trained["total"] == share["total"] - MOE_LAYERS * router + MOE_LAYERS * table
    assert trained["activated"] == share["activated"] - MOE_LAYERS * router + MOE_LAYERS * N
    # the expert parameters themselves are those of SMoE-Share: N x W routed + W shared
    block = build_ffn("hash_share", D, W, N, vocab_size=VOCAB)
    assert sum(p.numel() for p in block.experts.parameters()) == N * 3 * D * W
    assert sum(p.numel() for p in block.shared_expert.parameters()) == 3 * D * W


@pytest.mark.parametrize("hash_table", ["fixed", "trained"])
def test_save_load_round_trip_through_auto_classes_keeps_the_table(tmp_path, hash_table):
    from repro_cartesian_moe import modeling  # noqa: F401  (registers the model)

    model = hash_model(hash_table)
    with torch.no_grad():  # a table the seeded draw would not give back
        for r in routers(model):
            r.table.add_(torch.randn(r.table.shape))
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert isinstance(loaded, CartesianMoEForCausalLM)
    assert loaded.config.moe_variant == "hash_share" and loaded.config.hash_table == hash_table
    for a, b in zip(routers(model), routers(loaded), strict=True):
        assert torch.equal(a.table, b.table)
        assert isinstance(b.table, torch.nn.Parameter) == (hash_table == "trained")
    x = ids()
    torch.testing.assert_close(loaded(input_ids=x).logits, model(input_ids=x).logits,
                               rtol=0, atol=0)  # fmt: skip


def test_evaluation_load_statistics_match_the_table():
    """experts_per_token = 2, and tokens per expert = the top-2 of each id's table row counted
    over the evaluated ids."""
    model = hash_model()
    blocks = ids(batch=6, length=16, seed=3).numpy()
    result = cmoe_eval.evaluate_model(model, blocks, bytes_per_token=4.0, batch_size=3)
    load = result["expert_load"]
    assert load["mean_experts_per_token"] == 2.0
    table = routers(model)[0].table
    top2 = table.topk(2, dim=-1).indices[torch.from_numpy(blocks).reshape(-1)]  # (tokens, 2)
    expected = torch.bincount(top2.reshape(-1), minlength=N).tolist()
    assert len(load["routers"]) == MOE_LAYERS
    for r in load["routers"]:
        assert r["tokens_per_expert"] == expected and r["experts_per_token"] == 2.0


def test_hash_share_without_input_ids_and_bad_switch_fail_clearly():
    model = hash_model()
    with pytest.raises(ValueError, match="input_ids"):
        model(inputs_embeds=model.get_input_embeddings()(ids()))
    presets = package_preset_dirs(cmoe_eval.__file__)
    with pytest.raises(ConfigError, match=r"model\.hash_table.*fixed"):
        load_config("debug", ["model.hash_table=random"], CartesianMoEModelConfig, presets)
    with pytest.raises(ValueError, match="vocab_size"):
        build_ffn("hash_share", D, W, N)
    cfg = load_config("debug", ["model.variant=hash_share", "model.hash_table=trained"],
                      CartesianMoEModelConfig, presets)  # fmt: skip
    built = cfg.model.build(vocab_size=VOCAB, max_position_embeddings=64)
    assert built.config.hash_table == "trained" and routers(built)[0].trainable
