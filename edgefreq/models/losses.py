"""Content losses: pixel L1 / L2 and the weighted frequency-domain L1 of the WFDL paper.

The WFDL paper weights |F(u,v) - F_hat(u,v)| by sqrt(u^2 + v^2) with u, v = 0..M-1 taken as
array indices; after a DFT the high indices are LOW negative frequencies, so that literal
weight favours the wrong coefficients. Here the radius uses the SIGNED frequencies
(torch.fft.fftfreq), scaled so the Nyquist frequency of one axis is 1 (the scale then does not
depend on the image size), and a floor keeps DC from weight 0:

    w(u, v) = floor + 2 * sqrt(fu^2 + fv^2),   fu, fv in cycles per pixel, [-0.5, 0.5)

The DFT is orthonormal, so the loss is on the scale of a pixel loss and can replace it in
OCR-GAN (content_loss: freq). One DC coefficient carries the mean brightness whatever its
weight, so a pixel L1 term (weight `pixel`) keeps the reconstruction's mean right.
"""

from __future__ import annotations

import torch
from torch import nn


def frequency_weights(height: int, width: int, floor: float, device: torch.device | None = None) -> torch.Tensor:
    """H x W weights in torch.fft.fft2 layout: `floor` at DC, growing with |frequency|, symmetric in its sign."""
    fu = torch.fft.fftfreq(height, device=device).view(-1, 1)
    fv = torch.fft.fftfreq(width, device=device).view(1, -1)
    return floor + 2.0 * torch.sqrt(fu**2 + fv**2)


class FrequencyLoss(nn.Module):
    """mean(w * |DFT(x_hat - x)|) + pixel * mean(|x_hat - x|), computed in float32 (AMP-safe)."""

    def __init__(self, floor: float = 0.1, pixel: float = 1.0) -> None:
        super().__init__()
        self.floor = floor
        self.pixel = pixel

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        diff = (x_hat - x).float()
        spectrum = torch.fft.fft2(diff, norm="ortho")  # DFT is linear: DFT(x_hat) - DFT(x)
        weights = frequency_weights(diff.shape[-2], diff.shape[-1], self.floor, diff.device)
        loss = (spectrum.abs() * weights).mean()
        if self.pixel > 0:
            loss = loss + self.pixel * diff.abs().mean()
        return loss


def content_loss(name: str, floor: float = 0.1, pixel: float = 1.0) -> nn.Module:
    """The reconstruction loss by name: "l1", "l2" or "freq" (FrequencyLoss(floor, pixel))."""
    if name == "l1":
        return nn.L1Loss()
    if name == "l2":
        return nn.MSELoss()
    if name == "freq":
        return FrequencyLoss(floor, pixel)
    raise ValueError(f"unknown content loss {name!r}")

