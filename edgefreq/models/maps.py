"""Anomaly maps: the per-pixel error between an image and its reconstruction (`model.map`).

Every map takes x and x_hat (N x C x H x W, the normalized image: mean 0.5 / std 0.5 puts it in
[-1, 1], a data range of 2) and returns N x H x W, larger = more anomalous, averaged over the
channels. All are plain convolutions, pooling and resizes with fixed taps, so they export to
ONNX / TensorRT / AOTInductor with the model (DESIGN.md decision 5).

- "sq":    (x - x_hat)^2, the papers' map.
- "ssim":  1 - SSIM (Wang et al. 2004): an 11-tap Gaussian window of sigma 1.5, C1 = (0.01 L)^2,
           C2 = (0.03 L)^2 with L = 2, the data range of the normalized image.
- "msgms": 1 - the multi-scale gradient magnitude similarity of RIAD (Zavrtanik et al. 2021):
           Prewitt gradients at 1, 1/2, 1/4 and 1/8 of the size (2 x 2 average pooling), GMS =
           (2 g g_hat + c) / (g^2 + g_hat^2 + c) with RIAD's c = 0.0026 for a data range of 1,
           times 4 for our range of 2; each scale resized back bilinearly, averaged over scales.
Borders replicate the edge pixels (no dark frame of zero padding in the map).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DATA_RANGE = 2.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_C1 = (0.01 * DATA_RANGE) ** 2
SSIM_C2 = (0.03 * DATA_RANGE) ** 2
GMS_C = 0.0026 * DATA_RANGE**2
GMS_SCALES = 4


def gaussian_taps(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalized 1-D Gaussian of radius ceil(3 sigma) (or `radius`); [1.] for sigma 0."""
    radius = math.ceil(3 * sigma) if radius is None else radius
    if radius == 0 or sigma == 0:
        return torch.ones(1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def separable(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Depthwise separable filter of N x C x H x W by 1-D `taps`, edge-replicated borders."""
    r = taps.numel() // 2
    if r == 0:
        return x
    c = x.shape[1]
    taps = taps.to(x.dtype)
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def sq_map(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return ((x - x_hat) ** 2).mean(dim=1)


def ssim_map(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    taps = gaussian_taps(SSIM_SIGMA, SSIM_RADIUS).to(x.device)
    mu_x, mu_y = separable(x, taps), separable(x_hat, taps)
    sxx = separable(x * x, taps) - mu_x * mu_x
    syy = separable(x_hat * x_hat, taps) - mu_y * mu_y
    sxy = separable(x * x_hat, taps) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * sxy + SSIM_C2)) / ((mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sxx + syy + SSIM_C2))
    return (1.0 - ssim).mean(dim=1)


def _gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    px = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=x.dtype, device=x.device) / 3.0
    kernel = torch.stack([px, px.T]).unsqueeze(1).repeat(c, 1, 1, 1)  # (2C, 1, 3, 3): d/dx, d/dy per channel
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
    return torch.sqrt(g[:, 0::2] ** 2 + g[:, 1::2] ** 2 + 1e-12)


def msgms_map(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    size = x.shape[-2:]
    total = torch.zeros_like(x[:, 0])
    for scale in range(GMS_SCALES):
        if scale:
            if min(x.shape[-2:]) < 6:  # too small to halve again: fewer scales
                return total / scale
            x, x_hat = F.avg_pool2d(x, 2), F.avg_pool2d(x_hat, 2)
        g, g_hat = _gradient_magnitude(x), _gradient_magnitude(x_hat)
        gms = ((2 * g * g_hat + GMS_C) / (g * g + g_hat * g_hat + GMS_C)).mean(dim=1, keepdim=True)
        if scale:
            gms = F.interpolate(gms, size=size, mode="bilinear", align_corners=False)
        total = total + (1.0 - gms[:, 0])
    return total / GMS_SCALES


MAP_FUNCTIONS = {"sq": sq_map, "ssim": ssim_map, "msgms": msgms_map}


def error_map(kind: str, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The `kind` map of x against x_hat: N x H x W."""
    return MAP_FUNCTIONS[kind](x, x_hat)
