"""LR-schedule features against a loop reference; every temporal form recovers its parameters."""

import numpy as np
import pytest
from repro_temporal_scaling_law import TEMPORAL_FORMS, LRSchedule, get_temporal_form
from repro_temporal_scaling_law.schedule import progress_without_schedule
from tsl_synthetic import (
    MAX_STEPS,
    MIN_LR_RATIO,
    PEAK_LR,
    WARMUP_STEPS,
    piecewise_cosine,
    warmup_cosine_lr,
)

SCHEDULE = LRSchedule.warmup_cosine(PEAK_LR, WARMUP_STEPS, MAX_STEPS, PEAK_LR * MIN_LR_RATIO)
STEPS = np.unique(np.round(np.geomspace(150, MAX_STEPS, 30)).astype(int))


def _areas_by_loop(lr: np.ndarray, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """S1 = sum_{k=1..s} eta_k; S2 = sum m_k, m_k = decay m_{k-1} + eta_{k-1} - eta_k after warmup."""
    s1, s2 = np.zeros(len(lr)), np.zeros(len(lr))
    momentum = 0.0
    for k in range(1, len(lr)):
        s1[k] = s1[k - 1] + lr[k]
        if k > WARMUP_STEPS:
            momentum = decay * momentum + (lr[k - 1] - lr[k])
        s2[k] = s2[k - 1] + momentum
    return s1, s2


def test_schedule_matches_config_formula_and_loop_reference():
    np.testing.assert_allclose(SCHEDULE.lr, warmup_cosine_lr(np.arange(MAX_STEPS + 1)), rtol=1e-12)
    assert SCHEDULE.warmup_end == WARMUP_STEPS

    progress = SCHEDULE.progress(STEPS)
    s1, s2 = _areas_by_loop(SCHEDULE.lr, 0.999)
    scale = PEAK_LR * MAX_STEPS
    np.testing.assert_allclose(progress.x, STEPS / MAX_STEPS)
    np.testing.assert_allclose(progress.lr_norm, warmup_cosine_lr(STEPS) / PEAK_LR)
    np.testing.assert_allclose(progress.cosine, piecewise_cosine(STEPS), atol=1e-12)
    np.testing.assert_allclose(progress.lr_area, s1[STEPS] / scale, rtol=1e-10)
    np.testing.assert_allclose(progress.annealing_area, s2[STEPS] / scale, rtol=1e-8, atol=1e-14)


def test_schedule_interpolated_from_dense_points_matches_formula():
    points = np.arange(0, MAX_STEPS + 1, 10)
    schedule = LRSchedule.from_points(points, warmup_cosine_lr(points), MAX_STEPS)
    # Linear interpolation between points 10 steps apart misses the warmup corner by <= 1%.
    np.testing.assert_allclose(schedule.lr, SCHEDULE.lr, atol=0.01 * PEAK_LR)


def test_schedule_from_points_refuses_to_guess_the_future():
    with pytest.raises(ValueError, match="before max_steps"):
        LRSchedule.from_points([0, 100, 400], [0.0, 1.0, 0.9], MAX_STEPS)


# Each form's equation written out independently of the registry.
REFERENCE = {
    "constant": ((2.5,), lambda p, q: np.full_like(p.x, q[0])),
    "linear": ((2.5, -0.3), lambda p, q: q[0] + q[1] * p.x),
    "log": ((1.2, 0.15), lambda p, q: q[0] + q[1] * np.log(p.x)),
    "hyperbolic": ((0.3, 5.0, 0.1), lambda p, q: q[0] / (1 + q[1] * p.x) + q[2]),
    "power": ((2.0, 0.4, 0.6), lambda p, q: q[0] + q[1] * p.x ** (-q[2])),
    "exp": ((2.0, 1.5, 0.2), lambda p, q: q[0] + q[1] * np.exp(-p.x / q[2])),
    "lr_linear": ((2.3, 0.6), lambda p, q: q[0] + q[1] * warmup_cosine_lr(p.steps) / PEAK_LR),
    "lr_piecewise_cosine": ((2.3, 0.6), lambda p, q: q[0] + q[1] * piecewise_cosine(p.steps)),
    "lr_piecewise_cosine_power": (
        (2.3, 0.4, 0.2, 0.5),
        lambda p, q: q[0] + q[1] * piecewise_cosine(p.steps) + q[2] * p.x ** (-q[3]),
    ),
    "lr_annealing": (
        (2.0, 0.5, 3.0, 0.6),
        lambda p, q: q[0] + q[1] * p.lr_area ** (-q[3]) - q[2] * p.annealing_area,
    ),
}


def test_every_registered_form_has_a_reference():
    assert set(REFERENCE) == set(TEMPORAL_FORMS)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_form_recovers_its_own_parameters(name):
    params, formula = REFERENCE[name]
    progress = SCHEDULE.progress(STEPS)
    y = formula(progress, params)
    form = get_temporal_form(name)

    fit = form.fit(progress, y)

    np.testing.assert_allclose(form.evaluate(progress, params), y, rtol=1e-12)
    np.testing.assert_allclose(fit.params, params, rtol=1e-4)


def test_lr_form_without_schedule_says_what_to_do():
    progress = progress_without_schedule(STEPS, MAX_STEPS)
    with pytest.raises(ValueError, match="LR schedule"):
        get_temporal_form("lr_piecewise_cosine").fit(progress, np.ones(len(STEPS)))
