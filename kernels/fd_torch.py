"""FD in plain torch: the reference that training uses on CPU (and on GPU without Triton).

pyrDown and pyrUp reproduce OpenCV's float32 arithmetic: a 5-tap binomial filter (1 4 6 4 1)/16
per axis with reflect-101 borders; pyrUp zero-stuffs to twice the size, filters with twice the
kernel, and crops to the requested (possibly odd) size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .pyramid import check_size

_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)


def _filter(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Separable 5x5 binomial filter, depthwise, reflect-101 borders; x is N x C x H x W."""
    c = x.shape[1]
    k = torch.tensor(_TAPS, dtype=x.dtype, device=x.device) * (scale / 16.0)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1).contiguous(), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5).contiguous(), groups=c)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """cv2.pyrDown: filter then keep even rows and columns; odd sizes round up."""
    return _filter(x, 1.0)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """cv2.pyrUp to `size` (height, width), which must be 2h or 2h-1 by 2w or 2w-1."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _filter(up, 2.0)[:, :, : size[0], : size[1]]


def smoothed(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[G1, ..., G(levels-1)]: G(k) is x taken down levels-k steps and brought back to full size."""
    sizes = check_size(x.shape[-2], x.shape[-1], levels)
    downs = [x]
    for _ in range(levels - 1):
        downs.append(pyr_down(downs[-1]))
    out = []
    for depth in range(levels - 1, 0, -1):
        g = downs[depth]
        for d in range(depth - 1, -1, -1):
            g = pyr_up(g, sizes[d])
        out.append(g)
    return out


def decouple_torch(x: torch.Tensor, levels: int = 2, clip_high: bool = False) -> list[torch.Tensor]:
    """Signed bands, lowest first, that sum to x; clip_high keeps only the positive half of the
    highest band, as the public OCR-GAN code's saturating uint8 subtract does (reproduction only)."""
    if levels == 1:
        return [x]
    g = smoothed(x, levels)
    bands = [g[0]] + [g[k + 1] - g[k] for k in range(levels - 2)] + [x - g[-1]]
    if clip_high:
        bands[-1] = bands[-1].clamp_min(0)
    return bands
