"""The heatmap overlay, written once: an anomaly map coloured (JET) from `low` to `high` and
blended over its image. Eval's montage, the NOK folder, the display:// sink and the operator page all draw
with it; each says which scale it uses (a fixed one across images, or the map's own range)."""

from __future__ import annotations

import cv2
import numpy as np

WEIGHT = 0.45  # of the heatmap in the blend


def to_bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] == 1 else image


def overlay(image: np.ndarray, amap: np.ndarray, low: float, high: float, at_map_size: bool = False) -> np.ndarray:
    """`image` (uint8 gray or BGR) with `amap` (H x W; NaN/inf drawn as `low`) coloured from low
    (blue) to high (red) on top, at the image's size (or, `at_map_size`, the map's)."""
    amap = np.nan_to_num(np.asarray(amap, np.float32), nan=low, posinf=high, neginf=low)
    span = high - low
    scaled = np.zeros(amap.shape, np.float32) if not span > 0 else np.clip((amap - low) / span, 0.0, 1.0)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    base = to_bgr(image)
    if at_map_size:
        base = cv2.resize(base, (amap.shape[1], amap.shape[0]), interpolation=cv2.INTER_AREA)
    else:
        heat = cv2.resize(heat, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(base, 1.0 - WEIGHT, heat, WEIGHT, 0.0)
