"""Temporal Scaling Law (Xiong et al., arXiv 2404.17785): per-position loss laws over training.

Read a run's per-token-position validation loss, fit ``L_i = a0 / (1 + a1 i) + a2`` per checkpoint,
fit how ``a0, a1, a2`` evolve over the early part of training, predict the loss of every later
step, compare with aggregate-loss baselines, and rank runs by their predicted final loss.
"""

from .api import fit_run
from .baselines import BASELINE_FORMS, DEFAULT_BASELINES, Baseline
from .metrics import kendall, mae, mape, prediction_errors, r2_score, regret, rmse, spearman
from .position_laws import POSITION_LAWS, fit_position_law, get_position_law
from .ranking import rank_runs
from .run_data import PositionLossRun, RunFormatError, load_run, save_run
from .schedule import LRSchedule, Progress
from .temporal_forms import TEMPORAL_FORMS, get_temporal_form
from .temporal_law import DEFAULT_FORMS, TemporalScalingLaw

__all__ = [
    "BASELINE_FORMS",
    "DEFAULT_BASELINES",
    "DEFAULT_FORMS",
    "POSITION_LAWS",
    "TEMPORAL_FORMS",
    "Baseline",
    "LRSchedule",
    "PositionLossRun",
    "Progress",
    "RunFormatError",
    "TemporalScalingLaw",
    "fit_position_law",
    "fit_run",
    "get_position_law",
    "get_temporal_form",
    "kendall",
    "load_run",
    "mae",
    "mape",
    "prediction_errors",
    "r2_score",
    "rank_runs",
    "regret",
    "rmse",
    "save_run",
    "spearman",
]
