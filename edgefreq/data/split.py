"""Good images -> a training part and a held-out calibration part (DESIGN.md decision 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefreq.errors import UserError


def split_train_calibration(
    paths: list[Path] | list[str], calibration_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split good images into (train, calibration), both sorted, disjoint, and together all of `paths`.

    Reproducible: the paths are sorted first, so the same set of paths and seed give the same
    split whatever their input order. round(n * fraction) images go to calibration, at least 1
    and at most n - 1, chosen by a seeded numpy Generator permutation.
    """
    if not 0.0 < calibration_fraction < 1.0:
        raise UserError(f"calibration fraction must be between 0 and 1 (exclusive), got {calibration_fraction}")
    ordered = sorted(Path(p) for p in paths)
    if len(set(ordered)) != len(ordered):
        raise UserError("the image list names the same file twice; a split must not put one image on both sides")
    n = len(ordered)
    if n < 2:
        raise UserError(f"need at least 2 good images to split into training and calibration, got {n}; add more good images")
    n_cal = min(max(round(n * calibration_fraction), 1), n - 1)
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_cal].tolist())
    train = [p for i, p in enumerate(ordered) if i not in chosen]
    calibration = [p for i, p in enumerate(ordered) if i in chosen]
    return train, calibration
