"""Calibration images as FD band batches: the data INT8 quantization calibrates its ranges on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from edgefreq.data.images import load_image
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess, frame_to_bands


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
