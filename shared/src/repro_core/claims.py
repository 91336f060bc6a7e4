"""One rule for judging a paper's claim from per-seed results, used by every package.

A claim names a metric, the method arm and one or more baseline arms. For each setting of the
grid (a vocabulary size, a length, ...) the per-seed values of the two arms are compared:

* arms that share at least ``MIN_SEEDS`` seeds are compared **paired by seed**: the per-seed
  differences (method - baseline) give a mean, a 95% t confidence interval and the p value of a
  paired t-test; otherwise, with at least ``MIN_SEEDS`` seeds in each arm, Welch's t-test;
* fewer than ``MIN_SEEDS`` seeds in an arm: "too few seeds", never a verdict;
* a non-finite value (a diverged run) is reported, never dropped: "diverged";
* "better" claims: **reproduced** when the CI excludes 0 in the claimed direction,
  **contradicted** when it excludes 0 the other way, else **not at this scale**;
* "matches" claims (equivalence) name a margin m in the metric's units: reproduced only when the
  whole CI lies inside (-m, m), contradicted when it lies wholly outside, else not at this scale;
  "no_worse" claims: reproduced when the CI's worse end is inside m, contradicted when even its
  better end is worse than m;
* several baselines ("beats the baselines"): the comparison is with the best baseline at that
  setting (by mean; trivial baselines such as last value or a constant included);
* a claim judged at several settings gets one row per setting and an overall verdict: "mixed"
  when the signs of the mean differences disagree (or, for equivalence, when some settings
  reproduce and some contradict), the common verdict when all settings agree, else not at this
  scale.

No torch import: report-only code paths use this module.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

MIN_SEEDS = 3
CONFIDENCE = 0.95
VERDICTS = (
    "reproduced",
    "contradicted",
    "not at this scale",
    "mixed",
    "too few seeds",
    "diverged",
)
RULE = (
    f"Verdicts follow one rule (`repro_core.claims`): arms sharing seeds are compared paired by "
    f"seed (mean of the per-seed differences method - baseline, {CONFIDENCE:.0%} t confidence "
    f"interval, paired t-test p), otherwise by Welch's t-test; fewer than {MIN_SEEDS} seeds gives "
    f"'too few seeds' and a non-finite run 'diverged'. A 'better than' claim is reproduced when the "
    f"interval excludes 0 in the claimed direction, contradicted when it excludes 0 the other way, "
    f"else 'not at this scale'. A 'matches' claim is reproduced only when the whole interval lies "
    f"inside its stated margin, a 'no worse' claim when the interval's worse end does. Several "
    f"baselines: the best one at each setting. Several settings: one row each; signs that "
    f"disagree give 'mixed'."
)

Kind = Literal["better", "matches", "no_worse"]


@dataclass(frozen=True)
class Claim:
    """A paper's claim, declared as data.

    Args:
        text: the claim, quoted from the paper, with where it is said (``'"..." (abstract)'``).
        metric: key of the per-run metric compared (``"val_bits_per_byte"``).
        method: the arm the claim is about.
        baseline: one arm, or several (compared with the best of them at each setting).
        lower_is_better: direction of the metric.
        kind: ``"better"`` (method better than baseline), ``"matches"`` (equal within
            ``margin``) or ``"no_worse"`` (not worse by more than ``margin``).
        margin: for ``matches`` / ``no_worse``: the margin in the metric's units, stated in the
            claim so that it is chosen before the result is seen.
        settings: the grid settings the claim is judged at (None: every setting measured).
    """

    text: str
    metric: str
    method: str
    baseline: str | tuple[str, ...]
    lower_is_better: bool = True
    kind: Kind = "better"
    margin: float | None = None
    settings: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("better", "matches", "no_worse"):
            raise ValueError(f"Claim.kind={self.kind!r}: allowed 'better', 'matches' or 'no_worse'")
        needs_margin = self.kind != "better"
        if needs_margin and (self.margin is None or not self.margin > 0):
            raise ValueError(
                f"a {self.kind!r} claim needs a positive margin in the metric's units "
                f"(Claim(..., margin=0.02)); got {self.margin!r}"
            )
        if not needs_margin and self.margin is not None:
            raise ValueError("a 'better' claim takes no margin; use kind='matches' or 'no_worse'")
        if isinstance(self.baseline, list):
            object.__setattr__(self, "baseline", tuple(self.baseline))

    @property
    def baselines(self) -> tuple[str, ...]:
        return (self.baseline,) if isinstance(self.baseline, str) else tuple(self.baseline)

    @property
    def arms(self) -> tuple[str, ...]:
        return (self.method, *self.baselines)


# ----------------------------------------------------------------------------------------------
# Statistics


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a)
    log_front -= math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f


def _t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return _betainc(df / 2, 0.5, df / (df + t * t))


def _t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t, by bisection on the two-sided tail."""
    tail = 2 * (1 - p)
    lo, hi = 0.0, 1.0
    while _t_two_sided_p(hi, df) > tail:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided_p(mid, df) > tail else (lo, mid)
    return (lo + hi) / 2


def _summary(values: list[float]) -> dict:
    finite = all(math.isfinite(v) for v in values)
    mean = statistics.fmean(values) if values else float("nan")
    std = statistics.stdev(values) if finite and len(values) > 1 else float("nan")
    return {"mean": mean, "std": std, "n": len(values)}


def compare(method: Mapping[int, float], baseline: Mapping[int, float]) -> dict:
    """Per-seed values (seed -> value) of two arms -> the difference method - baseline.

    Returns ``{"test": "paired"|"welch"|None, "n_pairs", "diff", "ci_low", "ci_high", "p",
    "method": {mean, std, n}, "baseline": {...}, "nonfinite_seeds": {...}, "enough": bool}``.
    Paired when the arms share at least ``MIN_SEEDS`` seeds (on the shared seeds only).
    """
    m = {int(s): float(v) for s, v in method.items()}
    b = {int(s): float(v) for s, v in baseline.items()}
    shared = sorted(set(m) & set(b))
    paired = len(shared) >= MIN_SEEDS
    if paired:
        m_used, b_used = [m[s] for s in shared], [b[s] for s in shared]
    else:
        m_used, b_used = [m[s] for s in sorted(m)], [b[s] for s in sorted(b)]
    out = {
        "method": _summary(m_used),
        "baseline": _summary(b_used),
        "method_seeds": shared if paired else sorted(m),
        "baseline_seeds": shared if paired else sorted(b),
        "nonfinite_seeds": {
            "method": [s for s in sorted(m) if not math.isfinite(m[s])],
            "baseline": [s for s in sorted(b) if not math.isfinite(b[s])],
        },
        "test": None,
        "n_pairs": len(shared) if paired else 0,
        "diff": float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "p": float("nan"),
        "enough": paired or (len(m) >= MIN_SEEDS and len(b) >= MIN_SEEDS),
    }
    if not out["enough"] or not all(math.isfinite(v) for v in m_used + b_used):
        return out
    alpha = 1 - CONFIDENCE
    if paired:
        d = [x - y for x, y in zip(m_used, b_used)]
        n = len(d)
        mean, sd = statistics.fmean(d), statistics.stdev(d)
        se, df = sd / math.sqrt(n), n - 1
        out["test"] = "paired"
    else:
        na, nb = len(m_used), len(b_used)
        va, vb = statistics.variance(m_used), statistics.variance(b_used)
        mean = statistics.fmean(m_used) - statistics.fmean(b_used)
        se = math.sqrt(va / na + vb / nb)
        denom = (va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)
        df = se**4 / denom if denom > 0 else float(na + nb - 2)
        out["test"] = "welch"
    half = _t_quantile(1 - alpha / 2, df) * se
    if se > 0:
        p = _t_two_sided_p(mean / se, df)
    else:  # every seed gave exactly the same difference
        p = 1.0 if mean == 0 else 0.0
    out.update(diff=mean, ci_low=mean - half, ci_high=mean + half, p=p)
    return out


# ----------------------------------------------------------------------------------------------
# The rule


def verdict(claim: Claim, comparison: dict) -> str:
    """The verdict of one comparison (one setting) under the rule of this module."""
    bad = comparison["nonfinite_seeds"]
    if bad["method"] or bad["baseline"]:
        return "diverged"
    if not comparison["enough"]:
        return "too few seeds"
    lo, hi = comparison["ci_low"], comparison["ci_high"]
    # improvement > 0 means the method is better than the baseline
    if claim.lower_is_better:
        better_lo, better_hi = -hi, -lo
    else:
        better_lo, better_hi = lo, hi
    if claim.kind == "better":
        if better_lo > 0:
            return "reproduced"
        if better_hi < 0:
            return "contradicted"
        return "not at this scale"
    m = float(claim.margin)
    if claim.kind == "matches":
        if -m < lo and hi < m:
            return "reproduced"
        if lo >= m or hi <= -m:
            return "contradicted"
        return "not at this scale"
    # no_worse: the method may be worse by less than m
    if better_lo > -m:
        return "reproduced"
    if better_hi <= -m:
        return "contradicted"
    return "not at this scale"


def overall(claim: Claim, rows: list[dict]) -> str:
    """One verdict from the per-setting rows (see the module docstring)."""
    if not rows:
        return "too few seeds"
    if len(rows) == 1:
        return rows[0]["verdict"]
    judged = [
        r for r in rows if r["verdict"] in ("reproduced", "contradicted", "not at this scale")
    ]
    if not judged:
        return "diverged" if any(r["verdict"] == "diverged" for r in rows) else "too few seeds"
    verdicts = {r["verdict"] for r in judged}
    if claim.kind == "better":
        sign = -1 if claim.lower_is_better else 1
        signs = {math.copysign(1, sign * r["diff"]) for r in judged if r["diff"] != 0}
        if len(signs) > 1:
            return "mixed"
    elif {"reproduced", "contradicted"} <= verdicts:
        return "mixed"
    if len(verdicts) == 1:
        return verdicts.pop()
    return "not at this scale"


def judge(
    claim: Claim,
    values: Mapping[tuple[str, str], Mapping[int, float]],
    settings: list[str] | tuple[str, ...] = ("",),
) -> dict:
    """Judge ``claim`` on per-seed values: ``values[(arm, setting)] = {seed: value}``.

    Returns the claim's fields, one row per setting (means, difference, CI, p, test, verdict,
    which baseline was used) and the overall verdict.
    """
    wanted = claim.settings if claim.settings is not None else tuple(settings)
    rows = []
    for setting in wanted:
        method = values.get((claim.method, setting), {})
        candidates = [b for b in claim.baselines if values.get((b, setting))]
        if not method or not candidates:
            missing = [a for a in claim.arms if not values.get((a, setting))]
            rows.append({"setting": setting, "baseline_arm": None, "verdict": "too few seeds",
                         "missing_arms": missing, "diff": float("nan")})  # fmt: skip
            continue

        def mean_of(arm: str, setting: str = setting) -> float:
            vals = [float(v) for v in values[(arm, setting)].values()]
            mu = statistics.fmean(vals)  # a diverged baseline is never "the best"
            return mu if math.isfinite(mu) else math.inf * (1 if claim.lower_is_better else -1)

        best = (min if claim.lower_is_better else max)(candidates, key=mean_of)
        comp = compare(method, values[(best, setting)])
        row = {"setting": setting, "baseline_arm": best, **comp, "verdict": verdict(claim, comp)}
        not_run = [b for b in claim.baselines if b not in candidates]
        if not_run:  # judged against the baselines that ran; the report names the others
            row["not_run"] = not_run
        rows.append(row)
    out = asdict(claim)
    out["baseline"] = list(claim.baselines)
    out["settings"] = list(wanted)
    out["rows"] = rows
    out["verdict"] = overall(claim, rows)
    return out


__all__ = ["CONFIDENCE", "Claim", "MIN_SEEDS", "RULE", "VERDICTS", "compare", "judge", "verdict"]
