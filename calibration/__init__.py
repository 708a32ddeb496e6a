"""Normal-only calibration (DESIGN.md decision 6): normal-score range, threshold policy, and the OK/NOK rule."""

from .calibration import Calibration, normalize_score
from .normal_range import QUANTILES, NormalRange
from .policy import COMPARED_POLICIES, KINDS, ThresholdPolicy, false_reject_rate, is_nok

__all__ = [
    "COMPARED_POLICIES",
    "KINDS",
    "QUANTILES",
    "Calibration",
    "NormalRange",
    "ThresholdPolicy",
    "false_reject_rate",
    "is_nok",
    "normalize_score",
]
