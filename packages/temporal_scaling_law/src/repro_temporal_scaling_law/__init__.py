"""Temporal Scaling Law (Xiong et al., arXiv 2404.17785): per-position loss laws over training.

Read a run's per-token-position validation loss, fit ``L_i = a0 / (1 + a1 i) + a2`` per checkpoint,
fit how ``a0, a1, a2`` evolve over the early part of training, predict the loss of every later
step, compare with aggregate-loss baselines, and rank runs by their predicted final loss.

The names below load on first use, so ``import repro_temporal_scaling_law`` stays cheap (no scipy)
and the command lines check their arguments first.
"""

from repro_core import lazy_exports

_EXPORTS = {
    "fit_run": ".api",
    "BASELINE_FORMS": ".baselines",
    "DEFAULT_BASELINES": ".baselines",
    "Baseline": ".baselines",
    "kendall": ".metrics",
    "mae": ".metrics",
    "mape": ".metrics",
    "prediction_errors": ".metrics",
    "r2_score": ".metrics",
    "regret": ".metrics",
    "rmse": ".metrics",
    "spearman": ".metrics",
    "POSITION_LAWS": ".position_laws",
    "fit_position_law": ".position_laws",
    "get_position_law": ".position_laws",
    "rank_runs": ".ranking",
    "PositionLossRun": ".run_data",
    "RunFormatError": ".run_data",
    "load_run": ".run_data",
    "save_run": ".run_data",
    "LRSchedule": ".schedule",
    "Progress": ".schedule",
    "TEMPORAL_FORMS": ".temporal_forms",
    "get_temporal_form": ".temporal_forms",
    "DEFAULT_FORMS": ".temporal_law",
    "TemporalScalingLaw": ".temporal_law",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
