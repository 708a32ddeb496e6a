"""Normal-only calibration (DESIGN.md decision 6): normal-score range, threshold policy, INT8 data."""

from .calibration import Calibration, normalize_score
from .int8_data import calibration_batches
from .normal_range import QUANTILES, NormalRange
from .policy import KINDS, ThresholdPolicy, false_reject_rate, is_nok

__all__ = [
    "KINDS",
    "QUANTILES",
    "Calibration",
    "NormalRange",
    "ThresholdPolicy",
    "calibration_batches",
    "false_reject_rate",
    "is_nok",
    "normalize_score",
]
