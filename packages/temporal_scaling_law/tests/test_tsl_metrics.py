"""Metrics equal values computed by hand on small arrays."""

import math

import numpy as np
import pytest
from repro_temporal_scaling_law import kendall, mae, mape, r2_score, regret, rmse, spearman


def test_mape_by_hand():
    # |1.1 - 1| / 1 = 0.1, |1.8 - 2| / 2 = 0.1 -> 10 %
    assert mape([1, 2], [1.1, 1.8]) == pytest.approx(10.0)
    # |2.2 - 2| / 2 = 0.1, |3.7 - 4| / 4 = 0.075, |5 - 5| = 0 -> 100 * 0.175 / 3
    assert mape([2, 4, 5], [2.2, 3.7, 5]) == pytest.approx(100 * 0.175 / 3)


def test_r2_by_hand():
    # SS_res = 1, SS_tot = (1-2)^2 + 0 + (3-2)^2 = 2 -> R^2 = 0.5
    assert r2_score([1, 2, 3], [1, 2, 4]) == pytest.approx(0.5)
    y = np.array([3.0, 2.5, 2.2, 2.1])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, y.mean())) == pytest.approx(0.0)
    assert r2_score(y, y + 1.0) < 0  # a biased prediction is worse than the mean
    assert math.isnan(r2_score([2.0, 2.0], [2.0, 2.1]))  # undefined for constant data


def test_rmse_and_mae_by_hand():
    assert rmse([0, 0], [3, 4]) == pytest.approx(math.sqrt(12.5))
    assert mae([0, 0], [3, -4]) == pytest.approx(3.5)


def test_rank_correlations_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # rank differences d = (0, 1, -1, 0): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # 5 concordant pairs and 1 discordant of 6: tau = (5 - 1) / 6
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_regret_by_hand():
    true = [2.5, 2.3, 2.4]
    assert regret(true, [1.0, 0.5, 0.9]) == 0.0  # picks run 1, the best
    assert regret(true, [0.1, 0.5, 0.9]) == pytest.approx(0.2)  # picks run 0


def test_shape_mismatch_and_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        mape([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="held-out window empty"):
        rmse([], [])
