"""The pix2pix U-Net generator (one per FD band), split into encoder levels and a decoder so
Channel Selection can sit between the band encoders at every level.

Level i has ngf * min(2^i, 8) channels. Down: LeakyReLU(0.2) -> Conv4x4/s2 -> BatchNorm (the
outermost level is the bare conv, the innermost has no BatchNorm). Up: ReLU ->
ConvTranspose4x4/s2 -> BatchNorm, concatenated with the skip from the same level; the outermost
up ends in Tanh. At 256 x 256 with depth 8 the bottleneck is 1 x 1 (~54M parameters at ngf 64).
"""

from __future__ import annotations

import torch
from torch import nn


def level_channels(ngf: int, depth: int) -> list[int]:
    """Channels after each encoder level."""
    return [ngf * min(2**i, 8) for i in range(depth)]


class UNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ngf: int, depth: int) -> None:
        super().__init__()
        ch = level_channels(ngf, depth)
        self.downs = nn.ModuleList()
        for i in range(depth):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(in_channels if i == 0 else ch[i - 1], ch[i], 4, 2, 1, bias=False))
            if 0 < i < depth - 1:
                layers.append(nn.BatchNorm2d(ch[i]))
            self.downs.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList()
        for i in range(depth):
            outermost, innermost = i == 0, i == depth - 1
            c_in = ch[i] if innermost else 2 * ch[i]
            c_out = out_channels if outermost else ch[i - 1]
            layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=outermost)]
            layers.append(nn.Tanh() if outermost else nn.BatchNorm2d(c_out))
            self.ups.append(nn.Sequential(*layers))

    def decode(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """skips[i] is the output of encoder level i (after CS); returns the reconstruction."""
        h = self.ups[-1](skips[-1])
        for i in range(len(skips) - 2, -1, -1):
            h = self.ups[i](torch.cat([skips[i], h], dim=1))
        return h
