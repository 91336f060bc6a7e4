"""Image tokenizers: the spec's quantizer invariants, checked against loops / closed forms."""

import itertools

import numpy as np
import pytest
import torch
from repro_mmntp.tokenizers import (
    EMAVectorQuantizer,
    FiniteScalarQuantizer,
    KMeansPaletteTokenizer,
    ResidualVQTokenizer,
    from_patches,
    to_patches,
)
from repro_mmntp.tokenizers.continuous import Projector


def test_vq_quantize_of_each_codebook_vector_is_its_index():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(32, 8)
    q.codebook.copy_(torch.randn(32, 8))
    assert torch.equal(q.quantize(q.codebook), torch.arange(32))


def test_vq_nearest_code_equals_brute_force_loop():
    torch.manual_seed(1)
    q = EMAVectorQuantizer(16, 4)
    z = torch.randn(50, 4, dtype=torch.float64)
    brute = [
        min(range(16), key=lambda j: float(((z[i] - q.codebook[j].double()) ** 2).sum()))
        for i in range(50)
    ]
    assert q.quantize(z.float()).tolist() == brute


def test_straight_through_forward_is_quantized_and_gradient_is_identity():
    torch.manual_seed(2)
    q = EMAVectorQuantizer(16, 4).eval()
    z = torch.randn(3, 5, 4, requires_grad=True)
    zq, codes, _ = q(z)
    torch.testing.assert_close(zq, q.codebook[codes], atol=1e-6, rtol=0)
    w = torch.randn_like(zq)
    (zq * w).sum().backward()
    torch.testing.assert_close(z.grad, w, atol=0, rtol=0)


def test_ema_update_with_decay_zero_gives_the_mean_of_assigned_vectors():
    torch.manual_seed(3)
    q = EMAVectorQuantizer(8, 3, decay=0.0)
    before = q.codebook.clone()
    z = torch.randn(200, 3)
    codes = q.quantize(z)
    q.ema_update(z, codes)
    for j in range(8):
        assigned = z[codes == j].double()
        expect = assigned.mean(0) if len(assigned) else before[j].double()
        torch.testing.assert_close(q.codebook[j].double(), expect, atol=1e-6, rtol=0)


def test_dead_code_restart_moves_unused_codes_onto_batch_vectors():
    torch.manual_seed(4)
    q = EMAVectorQuantizer(8, 2, decay=0.5, dead_threshold=0.6)
    q.codebook.copy_(torch.tensor([[0.0, 0.0]] + [[100.0 + j, 100.0] for j in range(7)]))
    z = torch.randn(64, 2) * 0.1  # every vector goes to code 0
    q.ema_update(z, q.quantize(z))  # codes 1..7: count 0.5 < 0.6 -> restarted
    assert q.restarts == 7
    restarted = q.codebook[1:]
    assert all(any(torch.equal(r, v) for v in z) for r in restarted)


def test_fsq_codes_lie_on_the_grid_and_index_code_is_a_bijection():
    q = FiniteScalarQuantizer([4, 5, 3])
    z = torch.randn(1000, 3) * 3
    values, codes = q(z)
    grid = values * q.half_width
    for d, levels in enumerate([4, 5, 3]):
        allowed = torch.arange(levels) - levels // 2
        assert torch.isin(grid[:, d].round(), allowed).all()
        torch.testing.assert_close(grid[:, d], grid[:, d].round())
    assert codes.min() >= 0 and codes.max() < 60 and len(codes.unique()) <= 60
    every = torch.arange(60)
    back = q.grid_to_index(q.index_to_grid(every))
    assert torch.equal(back, every)
    points = {tuple(p) for p in q.index_to_grid(every).tolist()}
    product = set(itertools.product(*[range(-(n // 2), n - n // 2) for n in (4, 5, 3)]))
    assert points == product


def test_fsq_rounding_has_identity_gradient_through_the_bound():
    q = FiniteScalarQuantizer([4, 4])
    z = torch.randn(10, 2, requires_grad=True)
    values, _ = q(z)
    values.sum().backward()
    zz = z.detach().clone().requires_grad_(True)
    (q.bound(zz) / q.half_width).sum().backward()
    torch.testing.assert_close(z.grad, zz.grad)


def test_residual_vq_codes_interleave_levels_and_decode_sums_both_codebooks():
    torch.manual_seed(5)
    tok = ResidualVQTokenizer(num_codes=8, latent_dim=4).eval()
    images = torch.rand(3, 8, 8)
    codes = tok.encode(images)
    assert codes.shape == (3, 32)
    assert (codes[:, 0::2] < 8).all() and (codes[:, 1::2] >= 8).all() and (codes < 16).all()
    z = tok.encoder(images)
    c1 = tok.levels[0].quantize(z)
    c2 = tok.levels[1].quantize(z - tok.levels[0].lookup(c1))
    expect = tok.decoder(tok.levels[0].lookup(c1) + tok.levels[1].lookup(c2))
    torch.testing.assert_close(tok.decode(codes), expect)


def test_patches_round_trip_and_kmeans_palette_maps_centroids_to_their_index():
    x = torch.rand(5, 8, 8)
    torch.testing.assert_close(from_patches(to_patches(x)), x)
    assert torch.equal(
        to_patches(x)[0, 0], torch.stack([x[0, 0, 0], x[0, 0, 1], x[0, 1, 0], x[0, 1, 1]])
    )
    tok = KMeansPaletteTokenizer(num_codes=6)
    rng = np.random.default_rng(0)
    tok.fit(rng.random((40, 8, 8)).astype(np.float32), seed=0)
    picks = torch.tensor([[j % 6 for j in range(16)]])
    images = tok.decode(picks)
    assert torch.equal(tok.encode(images), picks)


@pytest.mark.parametrize("kind,queries", [("linear", 0), ("mlp", 0), ("linear", 16)])
def test_projector_and_resampler_shapes(kind, queries):
    p = Projector(4, 32, kind, queries)
    out = p(torch.randn(3, 16, 4))
    assert out.shape == (3, 16 if not queries else queries, 32)
