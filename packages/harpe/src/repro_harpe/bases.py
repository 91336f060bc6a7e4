"""Choosing the per-head RoPE bases of HARPE (paper Section 3.2).

* :func:`uniform_bases` (Eq. 9): N bases equally spaced from b_min to b_max, ascending (head h
  gets the h-th) or descending.
* :func:`peak_valley_bases` (Eq. 10, Algorithm 1, taken from "Attention Buckets", Chen et al.
  2024b): greedily add the grid base whose attention-waveform peaks fall closest to the valleys
  of the bases chosen so far (and its valleys to their peaks), starting from b_min.

Algorithm 1 is garbled in the available copy of the paper (spec section 6, item 8): which
extrema count, the range of distances m, and how peaks pair with valleys are not stated. Each is
a switch of :class:`PeakValleySettings` with the default we chose:

* ``max_distance``: waveform evaluated at m = 1..max_distance (default: the target length);
* ``extrema``: ``prominent`` keeps the ``num_extrema`` highest local maxima and deepest local
  minima (default, K = 8), ``all`` keeps every local extremum;
* ``pairing``: ``nearest`` (default) d_j = sum_p min_v |p - v| + sum_v min_p |v - p|; ``index``
  pairs the i-th sorted peak with the i-th sorted valley (truncated to the shorter list);
* ``merge``: ``union`` (default) P_s, V_s accumulate the extrema of every chosen base; ``last``
  keeps only those of the most recently chosen base;
* ``order``: ``ascending`` (default; Table 2 lists the chosen bases in ascending head order) or
  ``selection`` (head h gets the h-th chosen base).

Ties of d_j go to the smaller base, so the search is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def uniform_bases(b_min: float, b_max: float, n: int, descending: bool = False) -> list[float]:
    """Eq. 9: b_h = b_min + h (b_max - b_min) / (N - 1), h = 0..N-1 (reversed if descending)."""
    if n < 1:
        raise ValueError(f"number of bases n={n} must be >= 1")
    if not 0 < b_min <= b_max:
        raise ValueError(f"need 0 < b_min <= b_max, got b_min={b_min}, b_max={b_max}")
    if n == 1:
        return [float(b_min)]
    step = (b_max - b_min) / (n - 1)
    bases = [float(b_min + h * step) for h in range(n)]
    bases[-1] = float(b_max)  # exact endpoint despite rounding
    return bases[::-1] if descending else bases


def attention_waveform(bases, head_dim: int, max_distance: int) -> np.ndarray:
    """w_b(m) = (2 / sqrt(d)) sum_{j=0}^{d/2-1} cos(m b^(-2j/d)), m = 0..max_distance.

    The pre-softmax score of an all-ones query and key at relative distance m under RoPE with
    base b (Attention Buckets' "attention waveform"); w_b(0) = sqrt(d).

    Returns (len(bases), max_distance + 1), float64.
    """
    b = np.asarray(bases, dtype=np.float64).reshape(-1, 1, 1)
    j = np.arange(head_dim // 2, dtype=np.float64).reshape(1, 1, -1)
    m = np.arange(max_distance + 1, dtype=np.float64).reshape(1, -1, 1)
    theta = b ** (-2.0 * j / head_dim)  # (nb, 1, d/2)
    return (2.0 / np.sqrt(head_dim)) * np.cos(m * theta).sum(-1)


def waveform_extrema(
    wave: np.ndarray, extrema: str = "prominent", num_extrema: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Peak and valley positions m >= 1 of one waveform (1-D, index = m).

    A peak is a strict local maximum (w[m-1] < w[m] >= w[m+1]), a valley a local minimum.
    ``prominent`` keeps the ``num_extrema`` highest peaks and deepest valleys; ``all`` every one.
    Returned sorted by position.
    """
    inner = wave[1:-1]
    peaks = np.flatnonzero((inner > wave[:-2]) & (inner >= wave[2:])) + 1
    valleys = np.flatnonzero((inner < wave[:-2]) & (inner <= wave[2:])) + 1
    if extrema == "prominent":
        peaks = np.sort(peaks[np.argsort(-wave[peaks], kind="stable")[:num_extrema]])
        valleys = np.sort(valleys[np.argsort(wave[valleys], kind="stable")[:num_extrema]])
    elif extrema != "all":
        raise ValueError(f"extrema={extrema!r}: allowed 'prominent' or 'all'")
    return peaks, valleys


def _distance(a: np.ndarray, b: np.ndarray, pairing: str) -> float:
    """Summed distance from each position of ``a`` to ``b`` (see module docstring)."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    if pairing == "nearest":
        return float(np.abs(a[:, None] - b[None, :]).min(1).sum())
    if pairing == "index":
        n = min(len(a), len(b))
        return float(np.abs(np.sort(a)[:n] - np.sort(b)[:n]).sum())
    raise ValueError(f"pairing={pairing!r}: allowed 'nearest' or 'index'")


@dataclass(frozen=True)
class PeakValleySettings:
    """The unverified details of Algorithm 1 (defaults documented in the module docstring)."""

    max_distance: int = 1024
    extrema: str = "prominent"
    num_extrema: int = 8
    pairing: str = "nearest"
    merge: str = "union"
    order: str = "ascending"

    def __post_init__(self) -> None:
        if self.max_distance < 2:
            raise ValueError(f"max_distance={self.max_distance} must be >= 2")
        if self.extrema not in ("prominent", "all"):
            raise ValueError(f"extrema={self.extrema!r}: allowed 'prominent' or 'all'")
        if self.num_extrema < 1:
            raise ValueError(f"num_extrema={self.num_extrema} must be >= 1")
        if self.pairing not in ("nearest", "index"):
            raise ValueError(f"pairing={self.pairing!r}: allowed 'nearest' or 'index'")
        if self.merge not in ("union", "last"):
            raise ValueError(f"merge={self.merge!r}: allowed 'union' or 'last'")
        if self.order not in ("ascending", "selection"):
            raise ValueError(f"order={self.order!r}: allowed 'ascending' or 'selection'")


def candidate_grid(b_min: float, b_max: float, step: float) -> np.ndarray:
    """B_c = {b_min + i s : i = 1 .. floor((b_max - b_min) / s)} (b_min itself starts B_s)."""
    if step <= 0:
        raise ValueError(f"grid step s={step} must be > 0")
    count = int(np.floor((b_max - b_min) / step + 1e-9))
    return b_min + step * np.arange(1, count + 1, dtype=np.float64)


def peak_valley_bases(
    b_min: float,
    b_max: float,
    step: float,
    n: int,
    head_dim: int,
    settings: PeakValleySettings = PeakValleySettings(),
) -> list[float]:
    """Algorithm 1: N bases from {b_min} and the grid B_c by the peak-valley complement.

    While |B_s| < N: for every unchosen candidate b_j, d_j = d_j^+ + d_j^- where d_j^+ is the
    distance of b_j's peaks to the chosen valleys V_s and d_j^- of its valleys to the chosen
    peaks P_s (Eq. 10); add the b_j with the smallest d_j and merge its extrema into P_s, V_s.

    Raises ValueError when the grid holds fewer than N - 1 candidates.
    """
    if n < 1:
        raise ValueError(f"number of bases n={n} must be >= 1")
    grid = candidate_grid(b_min, b_max, step)
    if len(grid) < n - 1:
        raise ValueError(
            f"the grid b_min={b_min} + i*{step} up to b_max={b_max} has {len(grid)} candidates; "
            f"{n} bases need at least {n - 1}: lower the step or widen [b_min, b_max]"
        )
    s = settings
    waves = attention_waveform(np.concatenate([[b_min], grid]), head_dim, s.max_distance)
    extrema = [waveform_extrema(w, s.extrema, s.num_extrema) for w in waves]
    chosen = [0]  # index 0 = b_min
    peaks_s, valleys_s = extrema[0]
    remaining = list(range(1, len(waves)))
    while len(chosen) < n:
        scores = [
            _distance(extrema[j][0], valleys_s, s.pairing)
            + _distance(extrema[j][1], peaks_s, s.pairing)
            for j in remaining
        ]
        best = remaining[int(np.argmin(scores))]  # first minimum = smallest base on ties
        chosen.append(best)
        remaining.remove(best)
        if s.merge == "union":
            peaks_s = np.union1d(peaks_s, extrema[best][0])
            valleys_s = np.union1d(valleys_s, extrema[best][1])
        else:
            peaks_s, valleys_s = extrema[best]
    all_bases = np.concatenate([[b_min], grid])
    bases = [float(all_bases[i]) for i in chosen]
    return sorted(bases) if s.order == "ascending" else bases


__all__ = [
    "PeakValleySettings",
    "attention_waveform",
    "candidate_grid",
    "peak_valley_bases",
    "uniform_bases",
    "waveform_extrema",
]
