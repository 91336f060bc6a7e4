"""HARPE's rotary table against independent references: HF Llama, fp64 equations, the core."""

import math

import pytest
import torch
from repro_core.config import ConfigError
from repro_core.layers import apply_rotary
from repro_core.modeling import DecoderConfig, DecoderLM
from repro_harpe.config import HarpeModelConfig
from repro_harpe.modeling import HarpeConfig, HarpeForCausalLM, set_rope
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

SHAPE = dict(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=256)  # fmt: skip
BASES = [1e4, 3e5, 1e6, 5e6]


def harpe(bases=BASES, scaling=None, seed=0, **kw) -> HarpeForCausalLM:
    torch.manual_seed(seed)
    cfg = HarpeConfig(**(SHAPE | kw), rope_theta_per_head=bases, rope_scaling_params=scaling)
    return HarpeForCausalLM(cfg).eval()


def ids(T=40, B=2, seed=1):
    return torch.randint(0, 61, (B, T), generator=torch.Generator().manual_seed(seed))


def test_all_bases_equal_is_exactly_the_core_single_base_rope():
    model = harpe([7e5] * 4)
    core = DecoderLM(DecoderConfig(**SHAPE, rope_theta=7e5)).eval()
    core.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(ids()).logits, core(ids()).logits)


@pytest.mark.parametrize(
    "scaling",
    [None, {"rope_type": "linear", "factor": 4.0},
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}],
    ids=["rope", "pi", "yarn"],
)  # fmt: skip
def test_all_bases_equal_matches_hf_llama(scaling):
    """One base for every head (and PI / YaRN) equals HF Llama's RoPE of the same type."""
    params = {"rope_type": "default", "rope_theta": 500.0} | (scaling or {})
    hf_cfg = LlamaConfig(**SHAPE, rms_norm_eps=1e-6, rope_parameters=params)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(hf_cfg).eval()
    ours = harpe([500.0] * 4, scaling=scaling)
    ours.load_state_dict(hf.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids(100)).logits, hf(ids(100)).logits, atol=1e-6, rtol=0)


def rope_fp64(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Eq. 3-5 written out in fp64 for one head, HF's half-split pairing: dimension i pairs
    with i + d/2 and rotates by m * base^(-2i/d). x (T, d)."""
    d = x.shape[-1]
    out = torch.empty_like(x, dtype=torch.float64)
    for i in range(d // 2):
        angle = positions.double() * base ** (-2.0 * i / d)
        a, b = x[:, i].double(), x[:, i + d // 2].double()
        out[:, i] = a * torch.cos(angle) - b * torch.sin(angle)
        out[:, i + d // 2] = a * torch.sin(angle) + b * torch.cos(angle)
    return out


def test_each_head_is_standard_rope_with_its_own_base_fp64():
    model = harpe()
    attn = model.model.layers[0].self_attn
    x = torch.randn(1, 48, 32, generator=torch.Generator().manual_seed(3))
    pos = torch.arange(48)[None]
    q, k, _ = attn.project_qkv(x, model.model.rotary_emb(x, pos))
    q0, k0, _ = attn.project_qkv(
        x, (torch.ones(1, 1, 48, 8), torch.zeros(1, 1, 48, 8))
    )  # unrotated
    for h, base in enumerate(BASES):
        torch.testing.assert_close(
            q[0, h].double(), rope_fp64(q0[0, h], pos[0], base), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            k[0, h].double(), rope_fp64(k0[0, h], pos[0], base), atol=1e-5, rtol=0
        )


def test_scores_depend_only_on_relative_position_per_head():
    """<R_m q, R_n k> = <R_{m+s} q, R_{n+s} k> for every head (Eq. 1)."""
    rot = harpe().model.rotary_emb
    q = torch.randn(1, 4, 1, 8, generator=torch.Generator().manual_seed(4))
    k = torch.randn(1, 4, 1, 8, generator=torch.Generator().manual_seed(5))

    def score(m, n):
        cm, sm = rot(q, torch.tensor([[m]]))
        cn, sn = rot(k, torch.tensor([[n]]))
        return (apply_rotary(q, cm, sm) * apply_rotary(k, cn, sn)).sum(-1)  # (1, H, 1)

    for m, n in [(7, 3), (30, 1), (5, 5)]:
        for shift in (1, 50, 150):
            torch.testing.assert_close(score(m, n), score(m + shift, n + shift), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scaling", [None, {"rope_type": "yarn", "factor": 4.0,
                                            "original_max_position_embeddings": 16}])  # fmt: skip
def test_kv_cache_decoding_equals_full_forward(scaling):
    model = harpe(scaling=scaling)
    x = ids(30)
    with torch.no_grad():
        full = model(x).logits
        out = model(x[:, :20], use_cache=True)
        steps, cache = [out.logits], out.cache
        for t in range(20, 30):
            out = model(x[:, t : t + 1], cache=cache, use_cache=True)
            steps.append(out.logits)
            cache = out.cache
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_gqa_with_different_bases_in_one_kv_group_is_refused_or_grouped():
    with pytest.raises(ValueError, match="must share one base"):
        harpe(num_key_value_heads=2)  # heads 0, 1 share a KV head but have bases 1e4, 3e5
    with pytest.raises(ConfigError, match="per_kv_group"):
        HarpeModelConfig(num_attention_heads=4, num_key_value_heads=2, rope_scheme="uniform")
    cfg = HarpeModelConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                           num_key_value_heads=2, rope_scheme="uniform",
                           rope_base_grouping="per_kv_group")  # fmt: skip
    model = cfg.build(vocab_size=61, max_position_embeddings=64)
    assert model.config.rope_theta_per_head == [1e6, 1e6, 5e6, 5e6]  # Eq. 9 over the 2 groups
    with torch.no_grad():
        assert model(ids()).logits.isfinite().all()


def test_save_load_round_trip_keeps_bases_and_scaling(tmp_path):
    model = harpe(scaling={"rope_type": "linear", "factor": 2.0})
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # no trust_remote_code
    assert type(loaded) is HarpeForCausalLM
    assert loaded.config.rope_theta_per_head == BASES
    assert loaded.config.rope_scaling_params == {"rope_type": "linear", "factor": 2.0}
    with torch.no_grad():
        assert torch.equal(model(ids()).logits, loaded(ids()).logits)


def test_generate_with_per_head_bases():
    out = harpe().generate(ids(5, 1), max_new_tokens=6, do_sample=False)
    assert out.shape == (1, 11)


def test_control_arm_builds_exactly_the_abf_single_model():
    """HARPE with every base equal (the control arm) is the same function as ABF one stage."""
    kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    control = HarpeModelConfig(**kw, rope_scheme="uniform", base_min=5e6, base_max=5e6)
    single = HarpeModelConfig(**kw, rope_scheme="single", rope_theta=5e6)
    torch.manual_seed(0)
    a = control.build(61, 128).eval()
    torch.manual_seed(0)
    b = single.build(61, 128).eval()
    assert a.config.rope_theta_per_head == [5e6] * 4 and b.config.rope_theta_per_head is None
    with torch.no_grad():
        assert torch.equal(a(ids()).logits, b(ids()).logits)


def test_set_rope_rebuilds_the_table_and_keeps_weights():
    model = harpe([1e4] * 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_rope(model, rope_theta_per_head=BASES, max_position_embeddings=512)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    inv = model.model.rotary_emb.inv_freq
    assert inv.shape == (4, 4)
    torch.testing.assert_close(
        inv[:, 1].double(), torch.tensor([b**-0.25 for b in BASES], dtype=torch.float64)
    )
    assert math.isclose(float(inv[0, 0]), 1.0)
