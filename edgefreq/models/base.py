"""AnomalyModel: the interface every model kind shares (training loop, eval, export, runtime).

A model takes a LIST of band tensors (lowest frequency first), each N x C x H x W, as FD makes
them (edgefreq.kernels.decouple); with FD off the list is [image]. The target of every
reconstruction is the sum of the bands, i.e. the (normalized) image.

    model.generator_parameters(), model.discriminator_parameters()  (the latter empty without D)
    model.reconstruct(bands) -> x_hat                     N x C x H x W
    model.losses_g(bands) -> {"total": ..., parts}        the generator / autoencoder step
    model.losses_d(bands, fake_bands) -> {"total": ...}   the discriminator step (GANs only)
    model.score(bands) -> (score N, amap N x H x W)       what the engine computes; model(bands) too
    model.has_discriminator
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from edgefreq.errors import UserError

from .config import ModelConfig


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalized 1-D Gaussian of radius ceil(3 sigma); [1.] for sigma 0."""
    radius = math.ceil(3 * sigma)
    if radius == 0:
        return torch.ones(1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def halvings(size: tuple[int, int]) -> int:
    """How many times both sides of `size` can be halved exactly (8 for 256 x 256, 5 for 224 x 224)."""
    h, w = size
    d = 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) > 0:
        h, w, d = h // 2, w // 2, d + 1
    return d


class AnomalyModel(nn.Module, abc.ABC):
    """Shared plumbing: input checks, the reconstruction target, the smoothed anomaly map."""

    has_discriminator = False

    def __init__(self, cfg: ModelConfig, in_channels: int, levels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_channels = in_channels
        self.levels = levels
        self.size = size
        # Fixed (not trained, not saved) smoothing taps: a plain separable conv2d in the graph.
        self.register_buffer("map_taps", gaussian_taps(cfg.map_sigma), persistent=False)

    def check_bands(self, bands: list[torch.Tensor]) -> None:
        """Static checks only (count, channels, H x W); the batch size stays free for export."""
        if len(bands) != self.levels:
            raise UserError(f"{self.cfg.kind} model was built for {self.levels} FD band(s), got {len(bands)}: match the FD levels")
        want = (self.in_channels, *self.size)
        for band in bands:
            if band.ndim != 4 or tuple(band.shape[1:]) != want:
                raise UserError(f"{self.cfg.kind} model expects bands of N x {want[0]} x {want[1]} x {want[2]}, got {tuple(band.shape)}")

    @staticmethod
    def target(bands: list[torch.Tensor]) -> torch.Tensor:
        """What every model reconstructs: the sum of the bands (the image FD split)."""
        out = bands[0]
        for band in bands[1:]:
            out = out + band
        return out

    def content_score(self, err: torch.Tensor, amap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content term N, anomaly map N x H x W) from the squared error, per cfg.score_reduce."""
        if self.cfg.score_reduce == "max":
            return amap.flatten(1).amax(dim=1), amap
        return err.flatten(1).mean(dim=1), amap

    def anomaly_map(self, err: torch.Tensor) -> torch.Tensor:
        """N x C x H x W squared error -> N x H x W: channel mean, Gaussian-smoothed (edge-replicated borders)."""
        m = err.mean(dim=1, keepdim=True)
        r = self.map_taps.numel() // 2
        if r > 0:
            taps = self.map_taps.to(m.dtype)
            m = F.pad(m, (r, r, r, r), mode="replicate")
            m = F.conv2d(m, taps.view(1, 1, 1, -1))
            m = F.conv2d(m, taps.view(1, 1, -1, 1))
        return m[:, 0]

    def forward(self, bands: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score(bands)

    # --- the interface each kind implements -------------------------------------------------

    @abc.abstractmethod
    def generator_parameters(self) -> list[nn.Parameter]:
        """What the generator (or autoencoder) optimizer steps."""

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """What the discriminator optimizer steps (empty without a discriminator)."""
        return []

    @abc.abstractmethod
    def reconstruct(self, bands: list[torch.Tensor]) -> torch.Tensor:
        """x_hat, N x C x H x W, the reconstruction of target(bands)."""

    @abc.abstractmethod
    def losses_g(self, bands: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The generator / autoencoder step's loss as "total", with its parts."""

    def losses_d(self, bands: list[torch.Tensor], fake_bands: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The discriminator step's loss as "total", with its parts."""
        raise TypeError(f"{self.cfg.kind} has no discriminator (check model.has_discriminator before the D step)")

    @abc.abstractmethod
    def score(self, bands: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(score N, anomaly map N x H x W); export-friendly: no loops over the batch, no .item()."""
