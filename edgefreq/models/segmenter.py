"""Segmenter: DRAEM's discriminative half on top of any reconstruction model (model.segment).

A small U-Net (3 halvings, widths w, 2w, 4w, 8w for model.segment = w) reads the image x, its
reconstruction x_hat and the model's smoothed error map z-scored per pixel (by statistics of the
training images' maps that training fits and the weights file keeps), and outputs a per-pixel
defect logit. Training (edgefreq/train.py, after the reconstruction model is done and frozen)
teaches it the masks of forged anomalies (data.forge_mixed) with DRAEM's focal loss. Its
probability map replaces the error map in the score: smoothed like it, then the ScoreHead as usual.

Why the z-scored map is an input: on bottle, seed 1, 40 epochs on the variation model, the head
reading (x, x_hat) alone reached image AUROC 0.932 and with the z-scored map 0.992 (prototype,
session 5, benchmarks/results/detectors.md); it then learns where the classical map is to be
believed instead of re-learning the comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgefreq.errors import UserError

from .score_head import floored_std

HALVINGS = 3
Z_SCALE = 10.0  # the z-scored map enters as z / Z_SCALE clipped to [-Z_CLIP, Z_CLIP]
Z_CLIP = 3.0
FOCAL_GAMMA = 2.0  # DRAEM's focal loss
STD_FLOOR = 0.1  # the input statistics' std floor, x the median per-pixel std (the ScoreHead default)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
    )


class Segmenter(nn.Module):
    def __init__(self, in_channels: int, width: int, size: tuple[int, int]) -> None:
        super().__init__()
        if size[0] % 2**HALVINGS or size[1] % 2**HALVINGS:
            raise UserError(f"model.segment needs an input size divisible by {2**HALVINGS}, got {size[0]}x{size[1]}")
        widths = [width * 2**i for i in range(HALVINGS + 1)]
        self.down = nn.ModuleList([_block(2 * in_channels + 1 if i == 0 else widths[i - 1], widths[i]) for i in range(HALVINGS + 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(HALVINGS)])
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(HALVINGS)])
        self.out = nn.Conv2d(widths[0], 1, 1)
        # the training images' map statistics: persistent, so the weights file carries them
        self.register_buffer("map_mean", torch.zeros(size))
        self.register_buffer("map_std", torch.ones(size))

    @torch.no_grad()
    def fit_map_stats(self, maps: torch.Tensor) -> None:
        """Per-pixel mean and std of N x H x W error maps of the training images; the std is
        floored by the ScoreHead's rule (score_head.floored_std at STD_FLOOR: flat regions never divide by ~0)."""
        maps = maps.double()
        mean, std = maps.mean(0), maps.std(0)
        self.map_mean.copy_(mean.to(self.map_mean.dtype))
        self.map_std.copy_(floored_std(std, mean, STD_FLOOR).to(self.map_std.dtype))

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
        """N x 1 x H x W defect logits from x, x_hat (N x C x H x W) and the smoothed error map (N x H x W)."""
        z = (err - self.map_mean.to(err.dtype)) / self.map_std.to(err.dtype)
        h = torch.cat([x, x_hat, (z / Z_SCALE).clamp(-Z_CLIP, Z_CLIP)[:, None]], dim=1)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h)
            if i < HALVINGS:
                skips.append(h)
                h = F.max_pool2d(h, 2)
        for i in reversed(range(HALVINGS)):
            h = self.merge[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        return self.out(h)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Mean focal loss (Lin et al. 2017) of N x 1 x H x W logits against a {0, 1} mask."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_true = p * target + (1 - p) * (1 - target)
    return (ce * (1 - p_true) ** gamma).mean()
