"""A calibration: normal range + threshold policy + the threshold and false-reject rate they give.

Saved as YAML on its own (`edgefreq calibrate`) and embedded in the engine's sidecar.

Normalized score (what the runtime prints next to the raw score):

    normalized = (score - median) / (threshold - median)

with the median of the calibration scores, so a typical good part scores 0 and the threshold
is 1: above 1 is NOK, and the value reads as "how far towards (or past) the threshold".

Trust (DESIGN.md decision 6): a calibration read from a file is refused when its threshold is not
finite or does not follow from its stored normal range and policy, and, when the file carries the
`sha256` that `to_dict` writes (a digest of the four fields), when that digest does not match:
either is a hand edit. A different threshold is a deliberate act: `edgefreq run --threshold X`,
which every decision record then says. Files written before the digest existed (the shipped
embedded model's sidecar among them) load with the range/policy check only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from edgefreq.config import check_keys, from_dict, load_yaml, to_dict, write_yaml
from edgefreq.errors import UserError

from .normal_range import QUANTILES, NormalRange
from .policy import ThresholdPolicy, false_reject_rate

_FIELDS = ("range", "policy", "threshold", "false_reject_rate")
DIGEST = "sha256"  # of the four fields as canonical JSON: a hand edit shows as a mismatch
REL_TOLERANCE = 1e-9  # a threshold "follows" from its range and policy up to float rounding


def digest(data: dict[str, Any]) -> str:
    """sha256 of the calibration fields as canonical JSON (sorted keys, repr floats)."""
    body = {k: data[k] for k in _FIELDS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Calibration:
    """The normal range, the policy, the threshold it gives and the implied false-reject rate."""

    range: NormalRange
    policy: ThresholdPolicy
    threshold: float
    false_reject_rate: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold):
            raise UserError(f"threshold {self.threshold} is not a finite number: calibrate again")
        if not self.threshold > self.range.median:
            raise UserError(
                f"threshold {self.threshold:.6g} is not above the median normal score {self.range.median:.6g} "
                f"({self.range.count} scores from {self.range.min:.6g} to {self.range.max:.6g}); "
                "the normal scores have no spread or the policy is too low: calibrate on more good images or raise it"
            )
        if not 0.0 <= self.false_reject_rate <= 1.0:
            raise UserError(f"false_reject_rate must be between 0 and 1, got {self.false_reject_rate}")

    @classmethod
    def from_scores(cls, scores: Any, policy: ThresholdPolicy | None = None) -> Calibration:
        """Calibrate on the scores of good images the model never trained on."""
        policy = ThresholdPolicy() if policy is None else policy
        extra = (policy.q,) if policy.kind == "quantile" else ()
        normal = NormalRange.from_scores(scores, quantiles=QUANTILES + extra)
        threshold = policy.threshold(normal)
        return cls(normal, policy, threshold, false_reject_rate(scores, threshold))

    @property
    def warning(self) -> str | None:
        """One sentence when the calibration count is too small for the policy, else None."""
        return self.policy.warning(self.range)

    def normalize(self, score: float) -> float:
        """`normalize_score(score, self)`."""
        return normalize_score(score, self)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "range": self.range.to_dict(),
            "policy": to_dict(self.policy),
            "threshold": float(self.threshold),
            "false_reject_rate": float(self.false_reject_rate),
        }
        return {**data, DIGEST: digest(data)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> Calibration:
        """A calibration from its mapping, refused when its threshold does not follow from its range
        and policy or its digest does not match its fields (a hand edit); see the module docstring."""
        stored = data.get(DIGEST) if isinstance(data, dict) else None
        check_keys(data, _FIELDS + ((DIGEST,) if stored is not None else ()), where)
        normal = NormalRange.from_dict(data["range"], f"{where}.range")
        policy = from_dict(ThresholdPolicy, data["policy"], f"{where}.policy")
        try:
            threshold = float(data["threshold"])
            rate = float(data["false_reject_rate"])
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: threshold and false_reject_rate must be numbers ({exc})") from None
        again = (
            "calibrate and export again (edgefreq calibrate RUN, edgefreq export RUN), or keep the file as it was "
            "written and pass --threshold X to run at another threshold on purpose"
        )
        if not math.isfinite(threshold):
            raise UserError(f"{where}: threshold {threshold} is not a finite number; {again}")
        expected = policy.threshold(normal)
        if not math.isclose(threshold, expected, rel_tol=REL_TOLERANCE, abs_tol=1e-12):
            raise UserError(
                f"{where}: threshold {threshold:.6g} does not follow from the stored normal range and policy "
                f"({policy.describe()} = {expected:.6g}): it was edited by hand; {again}"
            )
        if stored is not None and stored != digest(data):
            raise UserError(f"{where}: the calibration does not match its sha256: it was edited by hand; {again}")
        return cls(normal, policy, threshold, rate)

    def save(self, path: str | Path) -> None:
        """Write as YAML (through a temporary file, so an existing file is never left half-written)."""
        write_yaml(path, self.to_dict(), "calibration")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        return cls.from_dict(load_yaml(path), where=str(path))


def normalize_score(score: float, calibration: Calibration) -> float:
    """(score - median) / (threshold - median): the calibration median maps to 0, the threshold to 1."""
    median = calibration.range.median
    return (score - median) / (calibration.threshold - median)
