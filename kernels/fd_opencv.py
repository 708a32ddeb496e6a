"""FD with OpenCV (cv2.pyrDown / cv2.pyrUp in float32): the CPU runtime path and the reference."""

from __future__ import annotations

import cv2
import numpy as np

from .pyramid import check_size


def _smoothed(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """[G1, ..., G(levels-1)] for one H x W or H x W x C float32 image."""
    sizes = check_size(img.shape[0], img.shape[1], levels)
    downs = [img]
    for _ in range(levels - 1):
        downs.append(cv2.pyrDown(downs[-1]))
    out = []
    for depth in range(levels - 1, 0, -1):
        g = downs[depth]
        for d in range(depth - 1, -1, -1):
            g = cv2.pyrUp(g, dstsize=(sizes[d][1], sizes[d][0]))
        out.append(g.reshape(img.shape))
    return out


def decouple_image(img: np.ndarray, levels: int = 2, clip_high: bool = False) -> list[np.ndarray]:
    """Bands of one float32 image (H x W or H x W x C), lowest first."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    if levels == 1:
        return [img]
    g = _smoothed(img, levels)
    bands = [g[0]] + [g[k + 1] - g[k] for k in range(levels - 2)] + [img - g[-1]]
    if clip_high:
        bands[-1] = np.maximum(bands[-1], 0)
    return bands


def decouple_chw(x: np.ndarray, levels: int = 2, clip_high: bool = False) -> list[np.ndarray]:
    """Bands of a C x H x W float32 array (the model's layout), lowest first, each C x H x W."""
    bands = decouple_image(np.moveaxis(x, 0, -1), levels, clip_high)
    return [np.ascontiguousarray(np.moveaxis(b.reshape(x.shape[1], x.shape[2], -1), -1, 0)) for b in bands]
