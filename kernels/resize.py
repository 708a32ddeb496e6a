"""The ROI -> model-size resize, as OpenCV computes it on float32 (IPP off), and as per-axis tables.

Two modes (Preprocess.resize):
- "area" (the default): cv2.INTER_AREA. Downscaling both axes, every output pixel is the
  area-weighted mean of the source pixels its cell covers (antialiased: a 512 -> 128 resize
  averages 4 x 4 pixels instead of sampling 2 x 2 of them, so the high band sees the part, not
  aliasing). When either axis is upscaled OpenCV uses a 2-tap interpolation with its own
  INTER_AREA coefficients on BOTH axes; the tables below follow it exactly.
- "linear": cv2.INTER_LINEAR (2 taps per axis), what models exported before the area default used.

Both are separable: out = R_y X R_x^T with sparse rows. `resize_table(src, dst, offset, mode,
area_path)` gives one axis as (T, dst) int32 source indices (+ offset) and (T, dst) float32
weights, zero-padded to T taps, which the fused Triton kernel reads; `resize_image` is the OpenCV
call itself (the CPU runtime and the reference).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

RESIZE_MODES = ("area", "linear")
_CV = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def resize_image(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """cv2.resize to (height, width) in `mode`, IPP off for this call (the flag is per thread:
    IPP's float64 coordinates differ from OpenCV's own code, which ARM and our kernel follow)."""
    ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        return cv2.resize(img, (size[1], size[0]), interpolation=_CV[mode])
    finally:
        cv2.ipp.setUseIPP(ipp)


def area_path(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> bool:
    """OpenCV's INTER_AREA averages cells only when no axis is upscaled."""
    return src_hw[0] >= dst_hw[0] and src_hw[1] >= dst_hw[1]


def _pack(taps: list[list[tuple[int, float]]], offset: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(t) for t in taps)
    index = np.zeros((width, len(taps)), np.int64)
    weight = np.zeros((width, len(taps)), np.float32)
    for d, row in enumerate(taps):
        for k, (s, w) in enumerate(row):
            index[k, d], weight[k, d] = s, w
        index[len(row) :, d] = row[-1][0]  # padding taps read a valid pixel with weight 0
    return (index + offset).astype(np.int32), weight


def _linear_taps(src: int, dst: int) -> list[list[tuple[int, float]]]:
    """cv2 INTER_LINEAR: coordinate (d + 0.5) * scale - 0.5 in float32, clamped at the borders."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    taps = []
    for d in range(dst):
        x0 = math.floor(f[d])
        frac = np.float32(f[d] - np.float32(x0))
        if x0 < 0 or x0 >= src - 1:
            frac, x0 = np.float32(0.0), min(max(x0, 0), src - 1)
        taps.append([(x0, float(np.float32(1.0) - frac)), (min(x0 + 1, src - 1), float(frac))])
    return taps


def _area_interp_taps(src: int, dst: int) -> list[list[tuple[int, float]]]:
    """cv2 INTER_AREA when some axis is upscaled: sx = floor(d * scale), fx = (d + 1) - (sx + 1) / scale,
    fx <= 0 -> 0 else fx - floor(fx), as 2-tap linear weights clamped at the borders."""
    scale = src / dst
    inv = dst / src
    taps = []
    for d in range(dst):
        sx = math.floor(d * scale)
        fx = np.float32((d + 1) - (sx + 1) * inv)
        fx = np.float32(0.0) if fx <= 0 else np.float32(fx - np.float32(math.floor(fx)))
        if sx < 0:
            sx, fx = 0, np.float32(0.0)
        if sx >= src - 1:
            sx, fx = src - 1, np.float32(0.0)
        taps.append([(sx, float(np.float32(1.0) - fx)), (min(sx + 1, src - 1), float(fx))])
    return taps


def _area_cell_taps(src: int, dst: int) -> list[list[tuple[int, float]]]:
    """cv2 INTER_AREA downscaling: the cell [d * scale, (d + 1) * scale) in source pixels, weights =
    covered fraction / cell width (OpenCV's computeResizeAreaTab, its 1e-3 edge tolerance included)."""
    scale = src / dst
    taps = []
    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s1, s2 = math.ceil(f1), math.floor(f2)
        s2 = min(s2, src - 1)
        s1 = min(s1, s2)
        row = []
        if s1 - f1 > 1e-3:
            row.append((s1 - 1, float(np.float32((s1 - f1) / cell))))
        row += [(s, float(np.float32(1.0 / cell))) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            row.append((s2, float(np.float32(min(min(f2 - s2, 1.0), cell) / cell))))
        taps.append(row)
    return taps


def resize_table(src: int, dst: int, offset: int, mode: str = "area", cells: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One axis of the resize: ((T, dst) int32 source indices + offset, (T, dst) float32 weights).

    `cells`: whether OpenCV takes its cell-averaging path (area_path of the whole resize); only
    "area" reads it."""
    if mode == "linear":
        taps = _linear_taps(src, dst)
    elif cells:
        taps = _area_cell_taps(src, dst)
    else:
        taps = _area_interp_taps(src, dst)
    return _pack(taps, offset)
