"""CartesianMoEForCausalLM: HF round trip, generate(), training on the debug preset, parameter
parity of the model variants, MoE placement, aux losses, the top-1 switch, the CLIs."""

import json

import numpy as np
import pytest
import torch
from repro_cartesian_moe import evaluate as cmoe_eval
from repro_cartesian_moe import train as cmoe_train
from repro_cartesian_moe.bench import perf_cases
from repro_cartesian_moe.layers import CartesianMoEFFN
from repro_cartesian_moe.modeling import (
    MODEL_VARIANTS,
    CartesianMoEConfig,
    CartesianMoEForCausalLM,
    CartesianMoEModelConfig,
    MoELayer,
    set_disable_top1,
)
from repro_cartesian_moe.reproduce import checkpoints
from repro_core.config import ConfigError, load_config, package_preset_dirs
from repro_core.layers import SwiGLUMLP
from repro_core.modeling import count_parameters
from repro_core.moe import swiglu_mlp
from repro_core.train import Trainer, reset_accelerate
from transformers import AutoConfig, AutoModelForCausalLM

PRESETS = package_preset_dirs(cmoe_train.__file__)
VOCAB = 97


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    reset_accelerate()


def small_model(variant="cartesian", seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=64,
        moe_variant=variant,
        num_experts=4,
    )
    kwargs.update(overrides)
    # Larger init than the default so that routing is far from uniform in a random model.
    kwargs.setdefault("initializer_range", 0.2)
    return CartesianMoEForCausalLM(CartesianMoEConfig(**kwargs)).eval()


def tokens(batch=2, length=12, seed=1):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_moe_on_every_other_layer_from_layer_zero():
    model = small_model()
    kinds = [type(layer.mlp) for layer in model.model.layers]
    assert kinds == [MoELayer, SwiGLUMLP, MoELayer, SwiGLUMLP]
    assert all(isinstance(m.ffn, CartesianMoEFFN) for m in model.moe_layers())
    every_layer = small_model(moe_layer_interval=1)
    assert len(every_layer.moe_layers()) == 4
    dense = small_model("dense")
    assert dense.moe_layers() == [] and set_disable_top1(dense, True) == 0


def test_save_load_round_trip_through_auto_classes(tmp_path):
    model = small_model()
    x = tokens()
    expected = model(input_ids=x).logits
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, CartesianMoEConfig) and config.moe_variant == "cartesian"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is CartesianMoEForCausalLM
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(loaded(input_ids=x).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["cartesian", "fine_grained"])
def test_generate_with_cache_equals_greedy_without_cache(variant):
    model = small_model(variant)
    prompt = tokens(batch=1, length=6)
    cached = model.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True)
    ids = prompt
    for _ in range(10):  # greedy decoding by hand: full forward every step, no cache
        next_id = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
    assert torch.equal(cached, ids)


def test_padding_is_left_out_of_routing_statistics():
    model = small_model()
    x = tokens(batch=2, length=8)
    mask = torch.ones_like(x)
    mask[0, :3] = 0  # left padding
    from repro_core.layers import ForwardState

    state = ForwardState(input_ids=x, attention_mask=mask)
    model.model(input_ids=x, attention_mask=mask, state=state)
    for aux in state.shared["moe_aux"]:
        assert aux.load.tokens_per_expert.sum() == (2 * 8 - 3) * 2  # unpadded tokens x top-2


def test_a_few_training_steps_lower_the_loss_on_the_debug_preset(tmp_path):
    cfg = load_config(
        "debug", ["train.max_steps=25", "train.eval_every=0"], CartesianMoEModelConfig, PRESETS
    )
    results = Trainer(cfg, tmp_path).train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["lm_loss"] for r in lines if "lm_loss" in r]
    assert losses[-1] < losses[0] - 0.5
    assert results["val_loss"] < np.log(512)
    # two routers (sub-layers A and B) on the one MoE layer of the debug model, coefficient 0.01
    balancing = [r["aux/moe_load_balancing"] for r in lines if "aux/moe_load_balancing" in r]
    assert all(0.02 - 1e-6 <= b < 0.02 * 4 for b in balancing)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert loaded.config.moe_variant == "cartesian"


def parity_counts(variant):
    model = small_model(variant, initializer_range=0.02)
    return count_parameters(model)


def test_parameter_parity_of_the_model_variants():
    d, w, n, moe_layers = 32, 64, 4, 2
    counts = {v: parity_counts(v) for v in MODEL_VARIANTS}
    share = counts["smoe_share"]
    router, coef, norm = n * d, 2 * d + 2, d
    # Table 1 extras (spec §1.4): Fine-grained has a second router's worth of router weights;
    # Cartesian has that, a second mixing layer and the mid norm.
    assert counts["fine_grained"]["total"] - share["total"] == moe_layers * router
    assert counts["cartesian"]["total"] - share["total"] == moe_layers * (router + coef + norm)
    for key in ("activated",):
        assert counts["fine_grained"][key] - share[key] == moe_layers * router
        assert counts["cartesian"][key] - share[key] == moe_layers * (router + coef + norm)
    # SMoE-Top3: same expert parameters, no shared expert or mixing layer; activates 3(N+1)/N units
    unit = 3 * d * w
    assert counts["smoe_top3"]["total"] - share["total"] == -moe_layers * coef
    expected_top3_active = share["activated"] + moe_layers * (
        3 * (n + 1) * unit // n - 3 * unit - coef
    )
    assert counts["smoe_top3"]["activated"] == expected_top3_active
    # Dense: every layer one width-W FFN; each MoE layer holds N+1 units and activates 3
    assert share["total"] - counts["dense"]["total"] == moe_layers * (n * unit + router + coef)
    assert share["activated"] - counts["dense"]["activated"] == moe_layers * (
        2 * unit + router + coef
    )
    assert counts["cartesian_no_shared"]["total"] == counts["cartesian"]["total"] - moe_layers * (
        unit + 2 * coef
    )


def test_aux_losses_two_per_cartesian_layer_and_weighted():
    model = small_model(load_balancing_coef=0.5, z_loss_coef=0.1)
    x = tokens()
    out = model(input_ids=x, labels=x)
    from repro_core.layers import ForwardState

    state = ForwardState(input_ids=x)
    model.model(input_ids=x, state=state)
    auxes = state.shared["moe_aux"]
    assert len(auxes) == 2 * 2  # 2 MoE layers x 2 routers
    expected = 0.5 * sum(a.load_balancing_loss for a in auxes)
    torch.testing.assert_close(out.aux_losses["moe_load_balancing"], expected)
    torch.testing.assert_close(out.aux_losses["moe_z_loss"], 0.1 * sum(a.z_loss for a in auxes))
    torch.testing.assert_close(out.loss, out.lm_loss + sum(out.aux_losses.values()))


@pytest.mark.parametrize("variant", ["cartesian", "smoe_share", "smoe_top3", "fine_grained"])
def test_disabling_top1_changes_outputs_and_switching_back_restores_them(variant):
    model = small_model(variant)
    x = tokens()
    intact = model(input_ids=x).logits
    routers = 4 if variant == "cartesian" else 2
    assert model.set_disable_top1(True) == routers
    broken = model(input_ids=x).logits
    assert (broken - intact).abs().max() > 1e-3
    model.set_disable_top1(False)
    torch.testing.assert_close(model(input_ids=x).logits, intact, rtol=0, atol=0)


def test_cartesian_top1_switch_per_sublayer():
    model = small_model()
    x = tokens()
    outputs = {}
    for sublayers in (("a",), ("b",), ("a", "b")):
        assert model.set_disable_top1(True, sublayers) == 2 * len(sublayers)
        routers = [m.ffn.moe_a.router.disable_top1 for m in model.moe_layers()]
        assert routers == ["a" in sublayers] * 2
        outputs[sublayers] = model(input_ids=x).logits
        model.set_disable_top1(False)
    assert not torch.equal(outputs[("a",)], outputs[("b",)])
    assert not torch.equal(outputs[("a",)], outputs[("a", "b")])


def test_model_config_errors_name_the_key_and_allowed_values():
    with pytest.raises(ConfigError, match=r"model\.variant.*cartesian"):
        load_config("debug", ["model.variant=cartesion"], CartesianMoEModelConfig, PRESETS)
    with pytest.raises(ConfigError, match=r"model\.intermediate_size"):
        load_config(
            "debug",
            ["model.variant=smoe_top3", "model.intermediate_size=66"],
            CartesianMoEModelConfig,
            PRESETS,
        )
    with pytest.raises(ValueError, match="moe_variant"):
        CartesianMoEConfig(moe_variant="hash")


def test_every_preset_loads_and_builds_the_configured_variant():
    for preset in ("debug", "tiny", "small", "paper"):
        cfg = load_config(preset, [], CartesianMoEModelConfig, PRESETS)
        assert cfg.model.variant == "cartesian"
    cfg = load_config("debug", ["model.variant=fine_grained"], CartesianMoEModelConfig, PRESETS)
    model = cfg.model.build(vocab_size=VOCAB, max_position_embeddings=64)
    assert model.config.moe_variant == "fine_grained" and len(model.moe_layers()) == 1


def test_train_cli_prints_the_resolved_config(capsys):
    assert (
        cmoe_train.main(
            ["--preset", "debug", "--set", "model.variant=smoe_share", "--print-config"]
        )
        == 0
    )
    assert "variant: smoe_share" in capsys.readouterr().out


def test_evaluate_reports_top1_ratio_and_load_and_restores_routing():
    model = small_model()
    blocks = tokens(batch=6, length=16, seed=3).numpy()
    x = torch.from_numpy(blocks[:2])
    intact = model(input_ids=x).logits
    result = cmoe_eval.evaluate_model(model, blocks, bytes_per_token=4.0, batch_size=3)
    assert result["top1_disabled_ppl_ratio"] == pytest.approx(
        result["top1_disabled"]["perplexity"] / result["intact"]["perplexity"]
    )
    load = result["expert_load"]
    assert len(load["routers"]) == 4  # 2 layers x (A, B)
    assert all(sum(r["tokens_per_expert"]) == 6 * 16 * 2 for r in load["routers"])
    torch.testing.assert_close(model(input_ids=x).logits, intact, rtol=0, atol=0)
    dense = cmoe_eval.evaluate_model(small_model("dense"), blocks, 4.0, batch_size=3)
    assert dense["top1_disabled_ppl_ratio"] is None and dense["expert_load"]["mean_cv"] is None


def test_claims_name_arms_of_the_grid():
    from repro_cartesian_moe.reproduce import CLAIMS, GRID

    arms = {a.name for a in GRID.arms}
    assert all(set(c.arms) <= arms for c in CLAIMS)
    assert {"cartesian", "cartesian_no_shared"} <= arms


def test_perf_cases_and_checkpoints_registration():
    cases = perf_cases(quick=True)
    assert {c["name"].rsplit(": ", 1)[1] for c in cases} == {
        "cartesian",
        "smoe_share",
        "smoe_top3",
        "fine_grained",
        "hash_share",
    }
    for case in cases:
        case["candidate"][1]()
        case["baseline"][1]()
        # quick shape D=32, W=64, 2 x 32 tokens; fwd+bwd = 6 FLOPs per activated weight and
        # token, and the activated weights are those of the dense baseline (width 3W)
        dense_weights = sum(p.numel() for p in swiglu_mlp(32, 3 * 64).parameters())
        assert case["work"] == 2 * 32
        assert case["flops"] == 6 * dense_weights * case["work"]


def test_checkpoint_registry_lists_exactly_the_finished_seed0_models(tmp_path, monkeypatch):
    """The lm-eval hook names a variant iff its seed-0 run holds a saved model."""
    from repro_cartesian_moe import reproduce

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    assert reproduce.checkpoints() == {}
    root = tmp_path / "runs" / "cartesian_moe" / "tiny"
    for variant, seed, saved in (
        ("cartesian", 0, True),
        ("cartesian_no_shared", 0, True),
        ("dense", 1, True),  # another seed
        ("smoe_share", 0, False),  # a run without its final model
    ):
        final = root / variant / f"seed{seed}" / "final"
        final.mkdir(parents=True)
        if saved:
            (final / "config.json").write_text("{}")
    assert checkpoints() == {
        "cartesian": str((root / "cartesian" / "seed0" / "final").resolve()),
        "cartesian_no_shared": str((root / "cartesian_no_shared" / "seed0" / "final").resolve()),
    }


def test_init_from_a_dense_hf_llama_checkpoint_copies_all_but_the_moe_mlps(tmp_path):
    """A tiny random HF LlamaForCausalLM loads: as ``dense`` it gives Llama's logits; as
    ``cartesian`` every weight but the MoE layers' MLPs is Llama's, and those start fresh."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
    ).eval()
    llama.save_pretrained(tmp_path / "llama")
    ids = tokens()
    with torch.no_grad():
        expected = llama(input_ids=ids).logits
    dense = CartesianMoEModelConfig(init_from=str(tmp_path / "llama"), variant="dense").build(
        VOCAB, 64
    )
    assert dense.dropped_keys == [] and dense.missing_keys == []
    with torch.no_grad():
        torch.testing.assert_close(dense.eval()(input_ids=ids).logits, expected)

    cfg = CartesianMoEModelConfig(
        init_from=str(tmp_path / "llama"), variant="cartesian", num_experts=4
    )
    model = cfg.build(VOCAB, 64)
    assert isinstance(model.model.layers[0].mlp, MoELayer)  # MoE on layers 0 and 2
    assert isinstance(model.model.layers[1].mlp, SwiGLUMLP)
    moe_mlp = {
        f"model.layers.{i}.mlp.{p}_proj.weight" for i in (0, 2) for p in ("gate", "up", "down")
    }
    assert set(model.dropped_keys) == moe_mlp
    ours = model.state_dict()
    assert set(model.missing_keys) == {k for k in ours if ".mlp.ffn." in k}
    for name, value in llama.state_dict().items():
        if name not in moe_mlp and "rotary" not in name:
            assert torch.equal(ours[name], value), name
    out = model(input_ids=ids, labels=ids)
    assert torch.isfinite(out.loss)
    model.save_pretrained(tmp_path / "cmoe")  # a CartesianMoE checkpoint reloads as is
    again = CartesianMoEModelConfig(init_from=str(tmp_path / "cmoe"), num_experts=4).build(
        VOCAB, 64
    )
    for name, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name


@pytest.mark.parametrize("variant", ["cartesian", "smoe_share", "smoe_topp"])
def test_routers_run_in_fp32_under_bf16_autocast(variant):
    """Every router's logits and probabilities are fp32 and finite in a bf16-autocast forward
    and backward of the whole model."""
    from repro_core.moe import TopKRouter

    model = small_model(variant).train()
    routes = []
    for module in model.modules():
        if isinstance(module, TopKRouter):
            module.register_forward_hook(lambda _m, _a, out: routes.append(out))
    ids = tokens()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert len(routes) == (4 if variant == "cartesian" else 2)  # MoE layers 0, 2
    for route in routes:
        for value in (route.logits, route.scores, route.weights):
            assert value.dtype == torch.float32
            assert bool(torch.isfinite(value).all())
    assert torch.isfinite(out.loss)
    for name, p in model.named_parameters():
        if "router" in name:
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


@torch.no_grad()
def test_experts_per_token_is_k_or_the_mean_of_top_p():
    from repro_cartesian_moe.modeling import expert_load_summary, record_expert_load
    from repro_core.moe import TopKRouter

    x = tokens(batch=3, length=16)
    per_token, topp_expected = {}, []
    for variant in ("smoe_share", "smoe_top3", "cartesian", "smoe_topp"):
        model = small_model(variant, initializer_range=0.5).eval()
        seen = []  # routed experts per token of every router call, counted from its output

        def hook(router, _args, out, seen=seen):
            seen.append(out.indices >= 0)
            if router.top_p is not None:  # top-p rule from the probabilities, token by token
                for probs in out.scores:
                    ranked = sorted(probs.tolist(), reverse=True)[: router.top_k]
                    kept, mass = 0, 0.0
                    while kept < len(ranked) and mass < router.top_p:
                        mass += ranked[kept]
                        kept += 1
                    topp_expected.append(kept)

        hooks = [
            m.register_forward_hook(hook) for m in model.modules() if isinstance(m, TopKRouter)
        ]
        record_expert_load(model, True)
        model(input_ids=x)
        for h in hooks:
            h.remove()
        summary = expert_load_summary(model)
        per_token[variant] = summary["mean_experts_per_token"]
        expected = sum(float(c.sum(-1).double().mean()) for c in seen) / len(seen)
        assert abs(per_token[variant] - expected) < 1e-6, variant
    assert per_token["smoe_share"] == 2.0 and per_token["cartesian"] == 2.0  # k per router
    assert per_token["smoe_top3"] == 3.0
    # top-p: the mean of the per-token counts of the loop above (tokens x routers, same sizes)
    assert abs(per_token["smoe_topp"] - sum(topp_expected) / len(topp_expected)) < 1e-6
    assert len(set(topp_expected)) > 1  # the count varies from token to token
