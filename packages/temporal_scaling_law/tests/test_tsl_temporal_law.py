"""Stages 2-3: the temporal law recovers known coefficients and predicts the final loss."""

import numpy as np
import pytest
from repro_temporal_scaling_law import LRSchedule, TemporalScalingLaw
from tsl_synthetic import (
    MAX_STEPS,
    MIN_LR_RATIO,
    NUM_POSITIONS,
    PEAK_LR,
    WARMUP_STEPS,
    TruthCoefficients,
    logged_steps,
)

SCHEDULE = LRSchedule.warmup_cosine(PEAK_LR, WARMUP_STEPS, MAX_STEPS, PEAK_LR * MIN_LR_RATIO)
TRUTH = TruthCoefficients()
TRUE_COEFFICIENTS = {
    "a0": {"u": TRUTH.a0_u, "v": TRUTH.a0_v},
    "a1": {"u": TRUTH.a1_u, "v": TRUTH.a1_v, "w": TRUTH.a1_w},
    "a2": {"u": TRUTH.a2_u, "v": TRUTH.a2_v},
}
STEPS = logged_steps()
FIT_MASK = (STEPS >= WARMUP_STEPS) & (STEPS <= 0.4 * MAX_STEPS)  # 11 checkpoints


def _fit(seed: int, noise: float, joint_refine: bool) -> TemporalScalingLaw:
    rng = np.random.default_rng(seed)
    loss = TRUTH.position_loss(STEPS) + rng.normal(0.0, noise, (len(STEPS), NUM_POSITIONS))
    return TemporalScalingLaw(joint_refine=joint_refine).fit(
        SCHEDULE.progress(STEPS), loss, FIT_MASK
    )


def _worst_relative_coefficient_error(tsl: TemporalScalingLaw) -> float:
    return max(
        abs(value / TRUE_COEFFICIENTS[param][name] - 1)
        for param, coefficients in tsl.coefficients.items()
        for name, value in coefficients.items()
    )


@pytest.mark.parametrize(
    ("joint_refine", "coefficient_tolerance", "final_loss_tolerance"),
    [(False, 0.06, 0.002), (True, 0.03, 0.0005)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_coefficients_and_final_loss_from_first_40_percent(
    seed, joint_refine, coefficient_tolerance, final_loss_tolerance
):
    # Noise 5e-4 nats per position, as in a long validation set; tolerances stated per method.
    tsl = _fit(seed, noise=5e-4, joint_refine=joint_refine)

    assert _worst_relative_coefficient_error(tsl) < coefficient_tolerance
    final = SCHEDULE.progress([MAX_STEPS])
    true_final = TRUTH.position_loss([MAX_STEPS]).mean()
    assert abs(tsl.predict_loss(final)[0] / true_final - 1) < final_loss_tolerance


def test_noise_free_fit_is_exact():
    tsl = _fit(seed=0, noise=0.0, joint_refine=False)
    assert _worst_relative_coefficient_error(tsl) < 1e-5
    later = SCHEDULE.progress(STEPS[~FIT_MASK & (STEPS > WARMUP_STEPS)])
    np.testing.assert_allclose(
        tsl.predict_position_loss(later), TRUTH.position_loss(later.steps), rtol=1e-6
    )


def test_predict_loss_is_the_mean_of_position_losses():
    tsl = _fit(seed=0, noise=5e-4, joint_refine=True)
    progress = SCHEDULE.progress(np.arange(1, MAX_STEPS + 1, 37))
    assert np.array_equal(tsl.predict_loss(progress), tsl.predict_position_loss(progress).mean(-1))
    assert tsl.predict_position_loss(progress).shape == (len(progress), NUM_POSITIONS)


def test_flat_early_checkpoints_are_left_out():
    rng = np.random.default_rng(0)
    loss = TRUTH.position_loss(STEPS) + rng.normal(0.0, 5e-4, (len(STEPS), NUM_POSITIONS))
    early = STEPS < 150
    loss[early] = 5.0 + rng.normal(0.0, 1e-3, (early.sum(), NUM_POSITIONS))  # flat in position
    mask = STEPS <= 0.4 * MAX_STEPS

    tsl = TemporalScalingLaw().fit(SCHEDULE.progress(STEPS), loss, mask)

    assert not tsl.usable[early].any()
    assert tsl.usable[mask & ~early].all()


def test_too_few_usable_checkpoints_is_a_clear_error():
    loss = np.full((len(STEPS), NUM_POSITIONS), 4.0)
    loss += np.random.default_rng(0).normal(0.0, 1e-3, loss.shape)
    with pytest.raises(ValueError, match=r"R\^2 >= min_r2=0.5.*fit_until"):
        TemporalScalingLaw().fit(SCHEDULE.progress(STEPS), loss, STEPS <= 0.4 * MAX_STEPS)


def test_forms_are_switches_validated_by_name():
    assert TemporalScalingLaw(forms={"a2": "power"}).forms == {
        "a0": "log",
        "a1": "hyperbolic",
        "a2": "power",
    }
    with pytest.raises(ValueError, match="unknown temporal form 'cubic'"):
        TemporalScalingLaw(forms={"a2": "cubic"})
    with pytest.raises(ValueError, match="not parameters of the 'hyperbolic' law"):
        TemporalScalingLaw(forms={"b0": "log"})
