"""FD as one fused Triton kernel: camera frame -> preprocessed image -> pyramid -> bands.

The pyramid is linear and separable, so every smoothed level is G(k) = P_k X Q_k^T per channel
(kernels.operators: banded matrices built from the torch reference). One program computes one
BLOCK x BLOCK output tile of one channel of one image; the grid is (tiles, images x channels),
so one launch covers the batch:

1. for each smoothed level k, the tile's window of the preprocessed image X (the rows and
   columns where P_k and Q_k are nonzero for this tile) is made on the fly, K x K pixels at a
   time: from the uint8 frame (ROI + cv2.resize INTER_AREA or INTER_LINEAR on float32: TY x TX
   loads per pixel and source channel through host-computed per-axis tap tables (kernels.resize),
   then channel order and (v / 255 - mean) / std), or loaded from a float image (decouple:
   MODE 0, no resize);
2. G_tile = sum over window chunks of P[tile rows, chunk] @ X_chunk @ Q[tile cols, chunk]^T,
   tl.dot in IEEE fp32;
3. it writes low = G1, band_k = G(k+1) - G(k), and high = X_tile - G(L-1) (X_tile made by the
   same code), so the bands sum to X up to fp32 rounding.

Every nonzero entry of P and Q lies inside the windows (checked on the host when the windows are
cut), so the result is the reference's up to fp32 rounding, not an approximation of it.

Choices: K = 16 (not one power-of-two window per tile): Triton's fp32 FMA dot holds whole
operand rows in registers, and K = 64 windows spilled hundreds of bytes per thread when compiled
for sm_90 (ptxas -v), while 16-pixel chunks compile without spills and pad each window only to a
multiple of 16. The tile size (16, 32 or 64) comes from an operation-count model per output size
and levels (pick_block), not from GPU measurements: benchmarks/fd.py is where to check it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import triton
import triton.language as tl

from edgefreq.errors import UserError

from .operators import Windowed, windowed
from .preprocess import Preprocess, roi_box
from .pyramid import check_levels, check_size
from .resize import area_path, resize_table

BLOCKS = (16, 32, 64)  # output tile sizes the host chooses from
WARPS = {16: 4, 32: 4, 64: 8}  # per block: no register spills when compiled for sm_90 / sm_87 (ptxas -v)
CHUNK = 16  # window chunk: the K of every tl.dot; larger K makes Triton's fp32 FMA dot spill registers
_GATHER_COST = 8.0  # a window pixel made by the 2 x 2 tap gather, in multiply-adds (cost model only)

# Channel modes of the window loader (constexpr MODE).
_DIRECT, _PICK, _GRAY = 0, 1, 2


@triton.jit
def _resample(p, ty, wy, tx, wx, rows, cols, rm, cm, H, W, s_y, s_x, m, TY: tl.constexpr, TX: tl.constexpr):
    """cv2.resize on float32 through per-axis tap tables (index, weight; TY rows x TX columns per
    output pixel): the horizontal pass on each source row, then the vertical, as OpenCV sums."""
    v = tl.zeros(m.shape, tl.float32)
    for i in tl.static_range(TY):
        y = tl.load(ty + i * H + rows, mask=rm, other=0)
        b = tl.load(wy + i * H + rows, mask=rm, other=0.0)[:, None]
        row = tl.zeros(m.shape, tl.float32)
        for j in tl.static_range(TX):
            x = tl.load(tx + j * W + cols, mask=cm, other=0)
            a = tl.load(wx + j * W + cols, mask=cm, other=0.0)[None, :]
            row += tl.load(p + (y * s_y)[:, None] + (x * s_x)[None, :], mask=m, other=0).to(tl.float32) * a
        v += row * b
    return v


@triton.jit
def _window(src, ty, wy, tx, wx, norm, rows, cols, H, W, c, s_y, s_x, s_c,
            MODE: tl.constexpr, CH_MUL: tl.constexpr, CH_ADD: tl.constexpr, TY: tl.constexpr, TX: tl.constexpr):
    """The preprocessed image X[c, rows, cols] (len(rows) x len(cols)), zero outside H x W.

    `src` points at this image's first element. MODE _DIRECT: a float image. Otherwise a uint8
    frame: resampled through the row tables (ty: TY source rows per output row, wy: their
    weights, as cv2.resize computes them) and column tables, then source channel
    CH_MUL * c + CH_ADD (_PICK) or the gray mix of B, G, R (_GRAY), then / 255, - mean, / std.
    """
    rm = (rows >= 0) & (rows < H)
    cm = (cols >= 0) & (cols < W)
    m = rm[:, None] & cm[None, :]
    if MODE == 0:
        v = tl.load(src + rows[:, None] * s_y + cols[None, :] * s_x + c * s_c, mask=m, other=0.0).to(tl.float32)
    else:
        if MODE == 1:
            v = _resample(src + (CH_MUL * c + CH_ADD) * s_c, ty, wy, tx, wx, rows, cols, rm, cm, H, W, s_y, s_x, m, TY, TX)
        else:  # gray = 0.299 R + 0.587 G + 0.114 B (BGR frame: channels 2, 1, 0), in cv2's order
            v = _resample(src + 2 * s_c, ty, wy, tx, wx, rows, cols, rm, cm, H, W, s_y, s_x, m, TY, TX) * 0.299
            v += _resample(src + s_c, ty, wy, tx, wx, rows, cols, rm, cm, H, W, s_y, s_x, m, TY, TX) * 0.587
            v += _resample(src, ty, wy, tx, wx, rows, cols, rm, cm, H, W, s_y, s_x, m, TY, TX) * 0.114
        v = tl.math.div_rn(v * (1.0 / 255.0) - tl.load(norm + c), tl.load(norm + 3 + c))
    return tl.where(m, v, 0.0)


@triton.jit
def _fd_kernel(src, out, pw, qw, pstart, qstart, pchunks, qchunks, ty, wy, tx, wx, norm,
               H, W, C, s_b, s_c, s_y, s_x, level_stride, tiles_h, tiles_w,
               LEVELS: tl.constexpr, MODE: tl.constexpr, CH_MUL: tl.constexpr, CH_ADD: tl.constexpr,
               CLIP: tl.constexpr, BLOCK: tl.constexpr, K: tl.constexpr,
               PSPAN: tl.constexpr, QSPAN: tl.constexpr, TY: tl.constexpr, TX: tl.constexpr):
    tile = tl.program_id(0)
    img = tl.program_id(1)  # image b, channel c
    b = img // C
    c = img % C
    ti = tile // tiles_w
    tj = tile % tiles_w
    rows = ti * BLOCK + tl.arange(0, BLOCK)
    cols = tj * BLOCK + tl.arange(0, BLOCK)
    rm = rows < H
    cm = cols < W
    m = rm[:, None] & cm[None, :]
    src_img = src + b.to(tl.int64) * s_b
    dst = out + img.to(tl.int64) * H * W + rows[:, None] * W + cols[None, :]
    prev = tl.zeros((BLOCK, BLOCK), tl.float32)
    for k in tl.static_range(LEVELS - 1):  # G(k+1), coarsest first
        r_start = tl.load(pstart + k * tiles_h + ti)
        c_start = tl.load(qstart + k * tiles_w + tj)
        n_r = tl.load(pchunks + k)
        n_c = tl.load(qchunks + k)
        acc = tl.zeros((BLOCK, BLOCK), tl.float32)
        for cc in range(n_c):
            wcols = c_start + cc * K + tl.arange(0, K)
            part = tl.zeros((BLOCK, K), tl.float32)
            for rr in range(n_r):
                wrows = r_start + rr * K + tl.arange(0, K)
                x = _window(src_img, ty, wy, tx, wx, norm, wrows, wcols, H, W, c, s_y, s_x, s_c, MODE, CH_MUL, CH_ADD, TY, TX)
                p = tl.load(pw + k * H * PSPAN + rows[:, None] * PSPAN + rr * K + tl.arange(0, K)[None, :],
                            mask=rm[:, None], other=0.0)
                part = tl.dot(p, x, part, input_precision="ieee")
            q = tl.load(qw + k * W * QSPAN + cols[None, :] * QSPAN + cc * K + tl.arange(0, K)[:, None],
                        mask=cm[None, :], other=0.0)
            acc = tl.dot(part, q, acc, input_precision="ieee")
        if k == 0:
            band = acc
        else:
            band = acc - prev
        tl.store(dst + k * level_stride.to(tl.int64), band, mask=m)
        prev = acc
    high = _window(src_img, ty, wy, tx, wx, norm, rows, cols, H, W, c, s_y, s_x, s_c, MODE, CH_MUL, CH_ADD, TY, TX) - prev
    if CLIP:
        high = tl.maximum(high, 0.0)
    tl.store(dst + (LEVELS - 1) * level_stride.to(tl.int64), high, mask=m)


INTERPRETED = not isinstance(_fd_kernel, triton.runtime.JITFunction)  # TRITON_INTERPRET=1 when imported


def _check_device(t: torch.Tensor) -> None:
    if t.device.type == "cuda" or (t.device.type == "cpu" and INTERPRETED):
        return
    raise UserError(
        f"the Triton FD kernel runs on CUDA tensors (got one on {t.device}); on the CPU use impl='torch' or "
        "'opencv', or set TRITON_INTERPRET=1 before edgefreq.kernels.fd_triton is first imported"
    )


def _tile_cost(rows: Windowed, cols: Windowed, block: int) -> float:
    """Estimated multiply-adds of one program: window gathers, the two products per level, the high tile."""
    cost = block * block * _GATHER_COST
    for n_r, n_c in zip(rows.chunks.tolist(), cols.chunks.tolist()):
        window = n_r * n_c * rows.chunk * cols.chunk
        cost += window * (block + _GATHER_COST) + n_c * cols.chunk * block * block
    return cost


@lru_cache(maxsize=64)
def pick_block(height: int, width: int, levels: int) -> int:
    """The tile size with the lowest estimated cost per image (untuned cost model, see _tile_cost)."""
    def total(block: int) -> float:
        tiles = -(-height // block) * -(-width // block)
        return tiles * _tile_cost(windowed(height, levels, block, CHUNK), windowed(width, levels, block, CHUNK), block)

    return min(BLOCKS, key=total)


@lru_cache(maxsize=32)
def _operators_on(height: int, width: int, levels: int, block: int, device: torch.device) -> dict:
    """The windowed row and column operators of one output size, as kernel arguments on `device`."""
    if levels == 1:  # no smoothed level: the kernel reads none of these
        dummy = torch.zeros(1, dtype=torch.int32, device=device)
        return dict(pw=dummy, qw=dummy, pstart=dummy, qstart=dummy, pchunks=dummy, qchunks=dummy,
                    PSPAN=CHUNK, QSPAN=CHUNK)
    rows, cols = windowed(height, levels, block, CHUNK), windowed(width, levels, block, CHUNK)

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return dict(pw=put(rows.values), qw=put(cols.values), pstart=put(rows.starts), qstart=put(cols.starts),
                pchunks=put(rows.chunks), qchunks=put(cols.chunks),
                PSPAN=rows.values.shape[2], QSPAN=cols.values.shape[2])


@lru_cache(maxsize=32)
def _resize_on(box: tuple[int, int, int, int], size: tuple[int, int], mode: str, mean: tuple[float, ...], std: tuple[float, ...],
               device: torch.device) -> dict:
    """Row and column tap tables of the `mode` resize of ROI `box` (x, y, w, h) to `size`, and mean and std, on `device`."""
    x, y, w, h = box
    cells = area_path((h, w), size)
    (ty, wy), (tx, wx) = resize_table(h, size[0], y, mode, cells), resize_table(w, size[1], x, mode, cells)
    norm = np.ones(6, np.float32)
    norm[: len(mean)] = mean
    norm[3 : 3 + len(std)] = std

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return dict(ty=put(ty), wy=put(wy), tx=put(tx), wx=put(wx), norm=put(norm), TY=ty.shape[0], TX=tx.shape[0])


def _launch(src: torch.Tensor, strides: tuple[int, int, int, int], batch: int, channels: int, size: tuple[int, int],
            levels: int, clip_high: bool, block: int | None, mode: int, ch_mul: int, ch_add: int,
            tables: dict | None) -> list[torch.Tensor]:
    """Run the kernel once for the whole batch; bands lowest first, each batch x channels x size, float32."""
    height, width = size
    block = block or pick_block(height, width, levels)
    if block not in BLOCKS:
        raise UserError(f"FD Triton block must be one of {BLOCKS}, got {block}")
    out = torch.empty((levels, batch, channels, height, width), dtype=torch.float32, device=src.device)
    if batch == 0:
        return list(out.unbind(0))
    ops = _operators_on(height, width, levels, block, src.device)
    if tables is None:
        dummy = torch.zeros(1, dtype=torch.float32, device=src.device)
        tables = dict(ty=dummy, wy=dummy, tx=dummy, wx=dummy, norm=dummy, TY=1, TX=1)
    tiles_h, tiles_w = -(-height // block), -(-width // block)
    grid = (tiles_h * tiles_w, batch * channels)
    s_b, s_c, s_y, s_x = strides
    _fd_kernel[grid](
        src, out, ops["pw"], ops["qw"], ops["pstart"], ops["qstart"], ops["pchunks"], ops["qchunks"],
        tables["ty"], tables["wy"], tables["tx"], tables["wx"], tables["norm"],
        height, width, channels, s_b, s_c, s_y, s_x, batch * channels * height * width, tiles_h, tiles_w,
        LEVELS=levels, MODE=mode, CH_MUL=ch_mul, CH_ADD=ch_add, CLIP=clip_high and levels > 1, BLOCK=block,
        K=CHUNK, PSPAN=ops["PSPAN"], QSPAN=ops["QSPAN"], TY=tables["TY"], TX=tables["TX"], num_warps=WARPS[block],
    )
    return list(out.unbind(0))


def decouple_triton(x: torch.Tensor, levels: int, clip_high: bool = False, *,
                    block: int | None = None) -> list[torch.Tensor]:
    """Bands of float N x C x H x W images, lowest first, as decouple_torch, in one launch (output in x's dtype)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        what = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(f"decouple_triton needs float N x C x H x W images, got a {what}")
    check_levels(levels)
    check_size(x.shape[2], x.shape[3], levels)
    _check_device(x)
    s = x.stride()
    bands = _launch(x, (s[0], s[1], s[2], s[3]), x.shape[0], x.shape[1], (x.shape[2], x.shape[3]), levels,
                    clip_high, block, _DIRECT, 0, 0, None)
    return bands if x.dtype == torch.float32 else [b.to(x.dtype) for b in bands]


def frame_to_bands_triton(frames: torch.Tensor, spec: Preprocess, *, block: int | None = None) -> list[torch.Tensor]:
    """uint8 B x H x W x Cin frames (Cin 1 gray or 3 BGR) -> spec.levels bands, lowest first, each
    B x spec.channels x size float32: ROI, resize, channel order, normalization and FD in one launch."""
    if not isinstance(spec, Preprocess):
        raise UserError(f"frame_to_bands_triton needs a Preprocess spec, got {type(spec).__name__}")
    is_tensor = isinstance(frames, torch.Tensor)
    if not is_tensor or frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[3] not in (1, 3):
        what = f"{frames.dtype} tensor of shape {tuple(frames.shape)}" if is_tensor else type(frames).__name__
        raise UserError(f"frames must be a uint8 B x H x W x C tensor with C = 1 (gray) or 3 (BGR), got a {what}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise UserError(f"frames are empty: shape {tuple(frames.shape)}")
    _check_device(frames)
    box = roi_box(spec, frames.shape[1], frames.shape[2])
    tables = _resize_on(box, tuple(spec.size), spec.resize, tuple(spec.mean), tuple(spec.std), frames.device)
    if frames.shape[3] == 1:
        mode, ch_mul, ch_add = _PICK, 0, 0
    elif spec.channels == 3:
        mode, ch_mul, ch_add = _PICK, -1, 2  # BGR -> RGB
    else:
        mode, ch_mul, ch_add = _GRAY, 0, 0
    s = frames.stride()
    return _launch(frames, (s[0], s[3], s[1], s[2]), frames.shape[0], spec.channels, spec.size, spec.levels,
                   spec.clip_high, block, mode, ch_mul, ch_add, tables)
