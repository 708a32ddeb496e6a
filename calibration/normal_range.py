"""The normal-score range: statistics of the scores a model gives good images it never trained on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefreq.config import check_keys, to_dict
from edgefreq.errors import UserError

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
_FIELDS = ("count", "min", "max", "mean", "std", "quantiles")


def _finite_scores(scores: Any) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise UserError("no normal scores to calibrate on; give at least one good calibration image")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise UserError(f"{bad} of {array.size} normal scores are NaN or infinite; the model or its inputs are broken")
    return array


@dataclass(frozen=True)
class NormalRange:
    """count, min, max, mean, std (sample std, ddof=1; 0 for one score) and quantiles
    {q: value} (numpy's default linear interpolation); the 0.5 quantile (median) is always there."""

    count: int
    min: float
    max: float
    mean: float
    std: float
    quantiles: dict[float, float] = field(default_factory=dict)

    @classmethod
    def from_scores(cls, scores: Any, quantiles: tuple[float, ...] = QUANTILES) -> NormalRange:
        """Statistics of a 1-D array of normal scores, with `quantiles` plus the median."""
        array = _finite_scores(scores)
        qs = sorted({0.5, *(float(q) for q in quantiles)})
        if not all(0.0 <= q <= 1.0 for q in qs):
            raise UserError(f"quantiles must be between 0 and 1, got {qs}")
        values = np.quantile(array, qs)
        return cls(
            count=int(array.size),
            min=float(array.min()),
            max=float(array.max()),
            mean=float(array.mean()),
            std=float(array.std(ddof=1)) if array.size > 1 else 0.0,
            quantiles={q: float(v) for q, v in zip(qs, values)},
        )

    @property
    def median(self) -> float:
        return self.quantile(0.5)

    def quantile(self, q: float) -> float:
        """The stored quantile q, or a UserError listing the stored ones."""
        for key, value in self.quantiles.items():
            if math.isclose(key, q, rel_tol=0.0, abs_tol=1e-12):
                return value
        stored = ", ".join(str(k) for k in sorted(self.quantiles))
        raise UserError(f"quantile {q} is not in the normal range (stored: {stored}); calibrate again with this quantile")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data, quantiles in increasing q."""
        return {**to_dict(self), "quantiles": {float(q): float(v) for q, v in sorted(self.quantiles.items())}}

    @classmethod
    def from_dict(cls, data: Any, where: str = "normal_range") -> NormalRange:
        check_keys(data, _FIELDS, where)
        try:
            count = data["count"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"count must be a positive integer, got {count!r}")
            stats = {k: float(data[k]) for k in ("min", "max", "mean", "std")}
            if not isinstance(data["quantiles"], dict):
                raise ValueError("quantiles must be a mapping of q: value")
            quantiles = {float(q): float(v) for q, v in data["quantiles"].items()}
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: {exc}") from None
        if not all(math.isfinite(v) for v in (*stats.values(), *quantiles.values())):
            raise UserError(f"{where}: the normal range holds a value that is not a finite number")
        if 0.5 not in quantiles:
            raise UserError(f"{where}: quantiles must include the median (0.5)")
        if not stats["min"] <= stats["max"]:
            raise UserError(f"{where}: min {stats['min']} is above max {stats['max']}")
        return cls(count=count, quantiles=quantiles, **stats)
