"""Threshold policies: where, above the normal range, a score becomes NOK.

- quantile:   threshold = the q quantile of the normal scores (expected false rejects ~ 1 - q),
- max_margin: threshold = max + margin * (max - min),
- mean_std:   threshold = mean + k * std.

The false-reject rate a threshold implies is measured on the calibration scores themselves
(the fraction of good images scoring above it); it is an estimate only as good as the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefreq.errors import UserError

from .normal_range import NormalRange

KINDS = ("quantile", "max_margin", "mean_std")
MIN_COUNT = 20  # fewer normal scores than this make any range a rough estimate


@dataclass(frozen=True)
class ThresholdPolicy:
    """kind + its one parameter (q for quantile, margin for max_margin, k for mean_std).

    The default, max + 10 % of the range, holds up on the few dozen calibration images a line
    usually has; a quantile needs about 1 / (1 - q) images to mean more than the maximum.
    """

    kind: str = "max_margin"
    q: float = 0.99
    margin: float = 0.1
    k: float = 3.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"threshold policy kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not 0.5 <= self.q <= 1.0:
            raise UserError(f"threshold policy q must be between 0.5 and 1, got {self.q}")
        if self.margin < 0:
            raise UserError(f"threshold policy margin must be >= 0, got {self.margin}")
        if self.k < 0:
            raise UserError(f"threshold policy k must be >= 0, got {self.k}")

    def describe(self) -> str:
        """The rule in words, e.g. 'max + 0.1 * (max - min)'."""
        if self.kind == "quantile":
            return f"the {self.q} quantile of the normal scores"
        if self.kind == "max_margin":
            return f"max + {self.margin} * (max - min)"
        return f"mean + {self.k} * std"

    def threshold(self, normal: NormalRange) -> float:
        """The score above which a part is NOK."""
        if self.kind == "quantile":
            return normal.quantile(self.q)
        if self.kind == "max_margin":
            return normal.max + self.margin * (normal.max - normal.min)
        return normal.mean + self.k * normal.std

    def warning(self, normal: NormalRange) -> str | None:
        """One sentence when `normal.count` is too small for this policy, else None."""
        if self.kind == "quantile" and self.q < 1.0:
            needed = math.ceil(1.0 / (1.0 - self.q) - 1e-9)
            if normal.count < needed:
                return (
                    f"the {self.q} quantile needs at least {needed} normal scores to mean more than the maximum, "
                    f"but there are {normal.count}, so the threshold is essentially the highest calibration score "
                    "and the false-reject rate it promises cannot be checked: calibrate on more good images or use max_margin."
                )
        if normal.count < MIN_COUNT:
            return (
                f"only {normal.count} normal scores (fewer than {MIN_COUNT}): the threshold is a rough estimate, "
                "calibrate on more good images the model never trained on."
            )
        return None


def is_nok(scores: Any, threshold: float) -> Any:
    """The OK/NOK rule, written once: NOK when a score is above the threshold, or not a finite
    number (fail-safe). A bool for one score, a bool array for an array of them."""
    array = np.asarray(scores, dtype=np.float64)
    out = ~np.isfinite(array) | (array > threshold)
    return bool(out) if out.ndim == 0 else out


# The policies calibration's validation compares on forgeries and benchmarks/operating_points.py on a
# test set: the line's choice (the cost of a false reject against an escape) made on the same menu.
COMPARED_POLICIES = (
    ThresholdPolicy(kind="max_margin", margin=0.1),
    ThresholdPolicy(kind="max_margin", margin=0.0),
    ThresholdPolicy(kind="quantile", q=0.95),
    ThresholdPolicy(kind="mean_std", k=3.0),
    ThresholdPolicy(kind="mean_std", k=2.0),
)


def false_reject_rate(scores: Any, threshold: float) -> float:
    """Fraction of normal scores that are NOK at `threshold` (good parts that would be rejected)."""
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise UserError("no normal scores to measure a false-reject rate on")
    return float(is_nok(array, threshold).mean())

