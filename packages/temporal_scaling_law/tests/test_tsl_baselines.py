"""Aggregate-loss baselines recover their generating parameters from noise-free data."""

import numpy as np
import pytest
from repro_temporal_scaling_law import BASELINE_FORMS, Baseline, LRSchedule
from tsl_synthetic import MAX_STEPS, MIN_LR_RATIO, PEAK_LR, WARMUP_STEPS

SCHEDULE = LRSchedule.warmup_cosine(PEAK_LR, WARMUP_STEPS, MAX_STEPS, PEAK_LR * MIN_LR_RATIO)
STEPS = np.unique(np.round(np.geomspace(100, 600, 15)).astype(int))
LATER = np.array([800, 1200, 2000])

REFERENCE = {
    "power_law": ((2.0, 0.5, 0.4), lambda p, q: q[0] + q[1] * p.x ** (-q[2])),
    "log_law": ((2.2, -0.3), lambda p, q: q[0] + q[1] * np.log(p.x)),
    "exponential": ((2.1, 1.0, 0.1), lambda p, q: q[0] + q[1] * np.exp(-p.x / q[2])),
    "reciprocal": ((1.0, 8.0, 2.0), lambda p, q: q[0] / (1 + q[1] * p.x) + q[2]),
    "lr_annealing": (
        (1.8, 0.6, 5.0, 0.3),
        lambda p, q: q[0] + q[1] * p.lr_area ** (-q[3]) - q[2] * p.annealing_area,
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_baseline_recovers_its_parameters_and_extrapolates_exactly(name):
    params, formula = REFERENCE[name]
    window, later = SCHEDULE.progress(STEPS), SCHEDULE.progress(LATER)

    baseline = Baseline(name).fit(window, formula(window, params))

    np.testing.assert_allclose(list(baseline.coefficients.values()), params, rtol=1e-4)
    np.testing.assert_allclose(baseline.predict(later), formula(later, params), rtol=1e-6)


def test_last_value_predicts_the_last_window_loss():
    window = SCHEDULE.progress(STEPS)
    loss = np.linspace(3.0, 2.5, len(STEPS))
    baseline = Baseline("last_value").fit(window, loss)
    np.testing.assert_array_equal(baseline.predict(SCHEDULE.progress(LATER)), np.full(3, 2.5))


def test_every_baseline_is_tested_and_unknown_names_fail():
    assert set(REFERENCE) | {"last_value"} == set(BASELINE_FORMS)
    with pytest.raises(ValueError, match="power_law"):
        Baseline("chinchilla")
