"""The run's calibration images (good images it never trained on) as FD band batches: what every
export is checked on (sample_bands) and what INT8 quantization calibrates its ranges on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from edgefreq.image_file import load_image
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess, frame_to_bands
from edgefreq.rundir import read_split

CHECK_IMAGES = 8  # images an export is checked on


def calibration_batches(paths: list[Path] | list[str], spec: Preprocess, batch_size: int) -> Iterator[list[np.ndarray]]:
    """Yield the engine's inputs for the calibration images, `batch_size` images at a time.

    Each item is a list of `spec.levels` float32 arrays (lowest band first), each B x C x H x W,
    made by the CPU runtime path (`frame_to_bands(..., impl="opencv")`), so INT8 ranges are
    measured on exactly what the engine will see. The last batch may be smaller. Images may
    have different sizes: each is preprocessed on its own, then stacked.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"calibration batch size must be a positive integer, got {batch_size!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no calibration images given for INT8 calibration; pass good images the model never trained on")
    for start in range(0, len(paths), batch_size):
        per_image = [frame_to_bands(load_image(p), spec, impl="opencv") for p in paths[start : start + batch_size]]
        yield [torch.cat([bands[k] for bands in per_image]).numpy() for k in range(spec.levels)]


def calibration_paths(run: Path) -> list[Path]:
    """The run's calibration images (split.yaml) that exist here; [] when the data is elsewhere."""
    if not (run / "split.yaml").exists():
        return []
    _, _, paths = read_split(run)
    return [p for p in paths if p.exists()]


def sample_bands(paths: list[Path], preprocess: Preprocess, count: int = CHECK_IMAGES) -> list[np.ndarray] | None:
    """Bands of the first `count` images (at least 2), the inputs every export is checked on."""
    if len(paths) < 2:
        return None
    return next(calibration_batches(paths[:count], preprocess, count))
