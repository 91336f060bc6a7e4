"""Base selection: Eq. 9 and the peak-valley search (Algorithm 1) against written-out references."""

import math

import numpy as np
import pytest
from repro_harpe.bases import (
    PeakValleySettings,
    attention_waveform,
    candidate_grid,
    peak_valley_bases,
    uniform_bases,
    waveform_extrema,
)


def test_uniform_bases_endpoints_spacing_and_order():
    bases = uniform_bases(1e6, 5e6, 8)
    assert len(bases) == 8 and bases[0] == 1e6 and bases[-1] == 5e6
    np.testing.assert_allclose(np.diff(bases), (5e6 - 1e6) / 7, rtol=1e-12)
    assert uniform_bases(1e6, 5e6, 8, descending=True) == bases[::-1]
    assert uniform_bases(2.0, 9.0, 1) == [2.0]
    with pytest.raises(ValueError, match="b_min"):
        uniform_bases(5.0, 1.0, 4)


def test_waveform_matches_a_loop_and_equals_sqrt_d_at_zero():
    d, b = 16, 3e5
    wave = attention_waveform([b], d, 50)[0]
    assert math.isclose(wave[0], math.sqrt(d), rel_tol=1e-12)  # (2/sqrt(d)) * d/2
    for m in (1, 7, 50):
        ref = 2 / math.sqrt(d) * sum(math.cos(m * b ** (-2 * j / d)) for j in range(d // 2))
        assert math.isclose(wave[m], ref, rel_tol=1e-12, abs_tol=1e-12)


def test_extrema_are_local_maxima_and_minima():
    wave = attention_waveform([1e4], 16, 300)[0]
    peaks, valleys = waveform_extrema(wave, "all")
    assert all(wave[p - 1] < wave[p] >= wave[p + 1] for p in peaks)
    assert all(wave[v - 1] > wave[v] <= wave[v + 1] for v in valleys)
    top, low = waveform_extrema(wave, "prominent", 3)
    assert len(top) == 3 and set(top) <= set(peaks) and min(wave[top]) >= np.sort(wave[peaks])[-3]
    assert len(low) == 3 and set(low) <= set(valleys)


def test_peak_valley_search_is_deterministic_unique_on_grid_and_starts_at_bmin():
    settings = PeakValleySettings(max_distance=512)
    a = peak_valley_bases(1e6, 5e6, 1e5, 8, 16, settings)
    b = peak_valley_bases(1e6, 5e6, 1e5, 8, 16, settings)
    assert a == b and len(a) == 8 and len(set(a)) == 8
    assert a[0] == 1e6 and a == sorted(a) and max(a) <= 5e6
    assert all(abs((x - 1e6) / 1e5 - round((x - 1e6) / 1e5)) < 1e-9 for x in a)
    assert peak_valley_bases(1e6, 5e6, 1e5, 1, 16, settings) == [1e6]
    sel = peak_valley_bases(1e6, 5e6, 1e5, 8, 16, PeakValleySettings(512, order="selection"))
    assert sel[0] == 1e6 and sorted(sel) == a
    with pytest.raises(ValueError, match="candidates"):
        peak_valley_bases(1e6, 1.2e6, 1e5, 8, 16, settings)


def test_second_base_is_the_minimum_of_eq10_computed_by_loops():
    """The first greedy step against Eq. 10 written out with Python loops."""
    d, L, k = 16, 400, 4
    settings = PeakValleySettings(max_distance=L, num_extrema=k)
    grid = candidate_grid(1e4, 2e5, 1e4)
    p0, v0 = waveform_extrema(attention_waveform([1e4], d, L)[0], "prominent", k)
    scores = []
    for b in grid:
        pj, vj = waveform_extrema(attention_waveform([b], d, L)[0], "prominent", k)
        plus = sum(min(abs(int(p) - int(v)) for v in v0) for p in pj)
        minus = sum(min(abs(int(v) - int(p)) for p in p0) for v in vj)
        scores.append(plus + minus)
    expected = float(grid[int(np.argmin(scores))])
    chosen = peak_valley_bases(1e4, 2e5, 1e4, 2, d, settings)
    assert chosen == sorted([1e4, expected])
