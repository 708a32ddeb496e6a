"""The variation model (the golden template of classical machine vision): the model-free floor.

The "reconstruction" of every image is the mean of the aligned good training images; the map is
the usual error against it (model.map), z-scored per pixel by the mean and std of good images'
maps when normalize is "pixel" (the calibration statistics), which is the classical
|x - mean| / std of a variation model. Fitted in one pass over the training images (no
gradients). A learned model that does not beat this on a data set is not a detector for it.
Only fixtured parts (the same pose in every frame) suit it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .base import AnomalyModel
from .config import ModelConfig
from .losses import content_loss


class Variation(AnomalyModel):
    trainable = False

    def __init__(self, cfg: ModelConfig, in_channels: int, levels: int, size: tuple[int, int]) -> None:
        super().__init__(cfg, in_channels, levels, size)
        # a parameter (not trained) so it is saved with the weights and moves with the model
        self.mean_image = nn.Parameter(torch.zeros(1, in_channels, *size), requires_grad=False)
        self.content = content_loss(cfg.content_loss, cfg.freq_floor, cfg.freq_pixel)

    def generator_parameters(self) -> list[nn.Parameter]:
        return []

    def fit(self, batches: Iterable[list[torch.Tensor]]) -> None:
        total, count = None, 0
        for bands in batches:
            x = self.target(bands).double()
            total = x.sum(0, keepdim=True) if total is None else total + x.sum(0, keepdim=True)
            count += x.shape[0]
        with torch.no_grad():
            self.mean_image.copy_((total / count).to(self.mean_image.dtype))

    def reconstruct(self, bands: list[torch.Tensor]) -> torch.Tensor:
        self.check_bands(bands)
        x = self.target(bands)
        return self.mean_image.to(x.dtype).expand_as(x)

    def losses_g(self, bands: list[torch.Tensor], clean: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x_hat = self.reconstruct(bands)
        loss = self.content(x_hat, self.target(bands) if clean is None else clean)
        return {"total": loss, "content": loss}, x_hat
