"""The DCGAN discriminator of Skip-GANomaly / OCR-GAN.

Conv4x4/s2 + LeakyReLU, then Conv4x4/s2 + BatchNorm + LeakyReLU stages (channels doubling) until
the map is at most 4 x 4, a conv over the whole remaining map to an nz-d feature (the latent
used by the latent loss and the score), and a 1x1 conv to one real/fake LOGIT (the sigmoid lives
in BCEWithLogits, which is AMP-safe).
"""

from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    def __init__(self, in_channels: int, ndf: int, nz: int, size: tuple[int, int]) -> None:
        super().__init__()
        h, w, c = size[0] // 2, size[1] // 2, ndf
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        while min(h, w) > 4:
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
            h, w, c = h // 2, w // 2, 2 * c
        layers.append(nn.Conv2d(c, nz, (h, w), bias=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(nz, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(real/fake logits N, latent features N x nz)."""
        f = self.features(x)
        return self.classifier(f).flatten(), f.flatten(1)
