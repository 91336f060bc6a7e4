"""Stage 1: the per-position laws recover known parameters (spec A.4 test 1)."""

import numpy as np
import pytest
from repro_temporal_scaling_law import fit_position_law, get_position_law

POSITIONS = np.arange(1, 65, dtype=float)  # i = 1..64


def _random_hyperbolic_params(num_curves: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.uniform(0.5, 3, num_curves),
            rng.uniform(0.02, 1, num_curves),
            rng.uniform(1, 5, num_curves),
        ],
        axis=1,
    )


def test_hyperbolic_fit_recovers_parameters_under_noise():
    true = _random_hyperbolic_params(50, seed=0)
    a0, a1, a2 = (true[:, k, None] for k in range(3))
    loss = a0 / (1 + a1 * POSITIONS) + a2
    loss = loss + np.random.default_rng(1).normal(0.0, 1e-3, loss.shape)

    fit = fit_position_law(loss, "hyperbolic")

    relative = np.abs(fit.params - true) / true
    assert relative[:, 0].max() < 0.02  # a0 within 2%
    assert relative[:, 1].max() < 0.05  # a1 within 5%
    assert relative[:, 2].max() < 0.02  # a2 within 2%
    assert fit.r2.min() > 0.999


def test_noise_free_hyperbolic_fit_is_exact():
    true = _random_hyperbolic_params(10, seed=2)
    loss = true[:, 0, None] / (1 + true[:, 1, None] * POSITIONS) + true[:, 2, None]

    fit = fit_position_law(loss)

    np.testing.assert_allclose(fit.params, true, rtol=1e-6)
    np.testing.assert_allclose(fit.r2, 1.0, atol=1e-9)


@pytest.mark.parametrize(
    ("law", "params", "formula"),
    [
        ("shifted_reciprocal", (4.0, 3.0, 2.5), lambda p, i: p[0] / (i + p[1]) + p[2]),
        ("position_power", (1.5, 0.47, 2.0), lambda p, i: p[0] * i ** (-p[1]) + p[2]),
    ],
)
def test_alternative_laws_recover_their_parameters(law, params, formula):
    loss = formula(params, POSITIONS)

    fit = fit_position_law(loss, law)

    np.testing.assert_allclose(fit.params, params, rtol=1e-5)


def test_first_position_and_index_offset_change_what_is_fitted():
    # Position 0 breaks the law; leaving it out of the fit recovers the rest exactly.
    a0, a1, a2 = 2.0, 0.3, 3.0
    loss = a0 / (1 + a1 * POSITIONS) + a2
    loss[0] = 9.0
    fit = fit_position_law(loss, first_position=1)
    np.testing.assert_allclose(fit.params, [a0, a1, a2], rtol=1e-6)

    # With 0-based indexing shifted by 2, the law sees i = 2..65.
    shifted = a0 / (1 + a1 * (POSITIONS + 1)) + a2
    fit = fit_position_law(shifted, index_offset=2)
    np.testing.assert_allclose(fit.params, [a0, a1, a2], rtol=1e-6)


def test_flat_curve_is_degenerate():
    flat = np.full(64, 3.0)
    assert np.isnan(fit_position_law(flat).r2)  # nothing to explain: a1 unidentifiable
    noisy_flat = flat + np.random.default_rng(3).normal(0, 1e-3, 64)
    assert fit_position_law(noisy_flat).r2 < 0.5


def test_hyperbolic_curve_matches_the_equation():
    params = np.array([[2.0, 0.5, 1.0]])
    expected = 2.0 / (1 + 0.5 * POSITIONS) + 1.0
    np.testing.assert_allclose(get_position_law("hyperbolic").curve(params, POSITIONS)[0], expected)


def test_unknown_law_lists_the_choices():
    with pytest.raises(ValueError, match="hyperbolic"):
        fit_position_law(np.ones(8), "cubic")
