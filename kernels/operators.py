"""The pyramid as matrices: G(k) = P_k X Q_k^T per channel, for the fused Triton FD kernel.

Every smoothed level G(k) (kernels.pyramid) is linear and separable, so along the rows of an
n-pixel axis it is one n x n matrix P_k (the composite of pyrDown/pyrUp with reflect-101
borders, odd sizes included), and the same function of the width gives Q_k. The matrices are
not derived by hand: `smoothing_operators` pushes identity columns through the torch reference
(kernels.fd_torch.smoothed) in float64, so they are the reference by construction.

`windowed` cuts them into the form the kernel reads: for each tile of `block` output rows, the
nonzero columns of those rows fit in a window of `chunks` x `chunk` input pixels starting at a
per-tile offset; it stores only that window and checks that no nonzero entry lies outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .fd_torch import smoothed
from .pyramid import check_size

_BATCH = 64  # identity columns pushed through the reference at a time (bounds host memory)


def _companion_width(levels: int) -> int:
    """The smallest width check_size accepts for `levels`: the other axis of the probe images."""
    width = 3
    for _ in range(levels - 2):
        width = 2 * width - 1
    return width


@lru_cache(maxsize=16)
def smoothing_operators(n: int, levels: int) -> np.ndarray:
    """(levels - 1) x n x n float64: row k is the operator of G(k+1) along an axis of n pixels.

    Column j is the reference applied to the image e_j 1^T (the unit vector along this axis,
    constant along the other one, where every pyramid step is exactly the identity), read back
    along this axis. Cached and read-only.
    """
    check_size(n, n, levels)
    if levels == 1:
        ops = np.zeros((0, n, n))
        ops.flags.writeable = False
        return ops
    width = _companion_width(levels)
    ops = np.empty((levels - 1, n, n))
    eye = torch.eye(n, dtype=torch.float64)
    for start in range(0, n, _BATCH):
        cols = eye[start : start + _BATCH]  # (b, n): unit vectors e_start .. along the axis
        probe = cols[:, None, :, None].expand(-1, 1, n, width).contiguous()
        for k, g in enumerate(smoothed(probe, levels)):
            ops[k, :, start : start + cols.shape[0]] = g[:, 0, :, 0].T.numpy()
    ops.flags.writeable = False
    return ops


@dataclass(frozen=True)
class Windowed:
    """Operators cut to per-tile windows: what the kernel needs for one axis."""

    values: np.ndarray  # (levels-1, n, chunks*chunk) float32: values[k, i, j] = P_k[i, starts[k, i // block] + j]
    starts: np.ndarray  # (levels-1, tiles) int32: first input pixel of each tile's window, per level
    chunks: np.ndarray  # (levels-1,) int32: chunks of `chunk` pixels level k needs
    chunk: int  # window chunk: a power of two >= 16 (a tl.dot dimension)


def tile_spans(ops: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, spans), each (levels-1, tiles): the nonzero column range of each tile of rows."""
    levels_1, n, _ = ops.shape
    tiles = -(-n // block)
    starts = np.zeros((levels_1, tiles), np.int64)
    spans = np.zeros((levels_1, tiles), np.int64)
    for k in range(levels_1):
        for t in range(tiles):
            cols = np.flatnonzero(np.any(ops[k, t * block : (t + 1) * block] != 0, axis=0))
            starts[k, t], spans[k, t] = cols[0], cols[-1] - cols[0] + 1
    return starts, spans


@lru_cache(maxsize=16)
def windowed(n: int, levels: int, block: int, chunk: int = 16) -> Windowed:
    """The operators of an n-pixel axis cut to the windows of tiles of `block` rows, in chunks of `chunk`.

    Raises AssertionError (a bug, not a user error) if any nonzero entry of an operator falls
    outside its tile's window: the kernel's exactness is checked here, not assumed.
    """
    ops = smoothing_operators(n, levels)
    starts, spans = tile_spans(ops, block)
    chunks = -(-spans.max(axis=1, initial=0) // chunk)
    span = int(chunks.max(initial=1)) * chunk
    values = np.zeros((ops.shape[0], n, span))
    for k in range(ops.shape[0]):
        for i in range(n):
            s = starts[k, i // block]
            row = ops[k, i, s : s + span]
            values[k, i, : row.shape[0]] = row
            if np.any(ops[k, i, :s]) or np.any(ops[k, i, s + span :]):
                raise AssertionError(f"FD operator level {k}, row {i} of {n}: a nonzero entry lies outside its window")
    return Windowed(values.astype(np.float32), starts.astype(np.int32), chunks.astype(np.int32), chunk)
