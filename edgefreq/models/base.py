"""AnomalyModel: the interface every model kind shares (training loop, eval, export, runtime).

A model takes a LIST of band tensors (lowest frequency first), each N x C x H x W, as FD makes
them (edgefreq.kernels.decouple); with FD off the list is [image]. The target of every
reconstruction is the sum of the bands, i.e. the (normalized) image.

    model.generator_parameters(), model.discriminator_parameters()  (the latter empty without D)
    model.reconstruct(bands) -> x_hat                     N x C x H x W, one generator pass
    model.restore(bands) -> x_hat                         what the score compares x with: reconstruct, or
                                                          with model.inpaint RIAD's pasted inpaintings
    model.losses_g(bands, clean) -> ({"total": ..., parts}, x_hat)   the generator / autoencoder step
    model.losses_d(bands, x_hat, fake_bands) -> {"total": ...} the discriminator step (GANs only),
                                                          on G's reconstruction, detached
    model.content(x_hat, x)                               the content loss (training's and the references')
    model.raw_parts(bands) -> (raw map N x H x W, latent N or None)   what calibration fits on
    model.score(bands) -> (score N, amap N x H x W)       what the engine computes; model(bands) too
    model.head                                            ScoreHead: the scoring statistics
    model.segmenter                                       Segmenter (model.segment > 0) or None: its
                                                          probability map replaces the error map
    model.has_discriminator, model.trainable (False: fitted in closed form by model.fit)
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

import torch
from torch import nn

from edgefreq.errors import UserError

from .config import ModelConfig
from .inpaint import inference_masks
from .maps import error_map, gaussian_taps, separable
from .score_head import ScoreHead
from .segmenter import Segmenter


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
    trainable = True

    def __init__(self, cfg: ModelConfig, in_channels: int, levels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_channels = in_channels
        self.levels = levels
        self.size = size
        # Fixed (not trained, not saved) smoothing taps: a plain separable conv2d in the graph.
        self.register_buffer("map_taps", gaussian_taps(cfg.map_sigma), persistent=False)
        self.head = ScoreHead(cfg, size)
        # DRAEM's discriminative half, trained after the reconstruction (train.segment_epochs)
        self.segmenter = Segmenter(in_channels, cfg.segment, size) if cfg.segment else None
        if cfg.inpaint:  # fixed (from a seed, not saved): constants in an export
            self.register_buffer("inpaint_masks", inference_masks(size), persistent=False)

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

    def error(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """N x H x W: the cfg.map error of x_hat against x, Gaussian-smoothed (edge-replicated borders)."""
        m = error_map(self.cfg.map, x, x_hat)[:, None]
        return separable(m, self.map_taps)[:, 0]

    def restore(self, bands: list[torch.Tensor]) -> torch.Tensor:
        """N x C x H x W, the reconstruction the score compares the image with: reconstruct(bands), or
        with model.inpaint every scale's disjoint cell sets erased in turn, inpainted, pasted
        together, and the mean over the scales (models/inpaint.py); one batch of scales x sets x N."""
        if not self.cfg.inpaint:
            return self.reconstruct(bands)
        masks = self.inpaint_masks.to(bands[0].dtype)  # scales x sets x H x W
        scales, sets = masks.shape[:2]
        keep = 1 - masks.flatten(0, 1)[:, None, None]  # scales*sets x 1 x 1 x H x W
        erased = [(band[None] * keep).flatten(0, 1) for band in bands]
        out = self.reconstruct(erased).unflatten(0, (scales, sets, -1))  # scales x sets x N x C x H x W
        return (out * masks[:, :, None, None]).sum(1).mean(0)

    def raw_map(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """N x H x W, what the ScoreHead scores: the error map, or with a segmenter its defect
        probability map (from x, x_hat and the error map), smoothed alike."""
        err = self.error(x, x_hat)
        if self.segmenter is None:
            return err
        p = torch.sigmoid(self.segmenter(x, x_hat, err))
        return separable(p, self.map_taps)[:, 0]

    @property
    def latent_used(self) -> bool:
        """Whether the score has a latent term (latent() returns a tensor)."""
        return False

    def latent(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor | None:
        """The latent term of the score (N), or None for kinds without one."""
        return None

    def raw_parts(self, bands: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(raw map, latent term): the score before its statistics, what `edgefreq calibrate` fits on."""
        x = self.target(bands)
        x_hat = self.restore(bands)
        return self.raw_map(x, x_hat), self.latent(x, x_hat)

    def score(self, bands: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(score N, anomaly map N x H x W); export-friendly: no loops over the batch, no .item()."""
        return self.head(*self.raw_parts(bands))

    def forward(self, bands: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score(bands)

    # --- the interface each kind implements -------------------------------------------------

    @abc.abstractmethod
    def generator_parameters(self) -> list[nn.Parameter]:
        """What the generator (or autoencoder) optimizer steps (never the segmenter's)."""

    def segmenter_parameters(self) -> list[nn.Parameter]:
        """What the segmentation stage's optimizer steps (empty without a segmenter)."""
        return [] if self.segmenter is None else list(self.segmenter.parameters())

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """What the discriminator optimizer steps (empty without a discriminator)."""
        return []

    @abc.abstractmethod
    def reconstruct(self, bands: list[torch.Tensor]) -> torch.Tensor:
        """x_hat, N x C x H x W, the reconstruction of target(bands)."""

    @abc.abstractmethod
    def losses_g(self, bands: list[torch.Tensor], clean: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The generator / autoencoder step's loss as "total", with its parts (one of them
        "content"), and the reconstruction x_hat it was computed on; `clean` is what x_hat must
        match when it differs from the bands' image (model.denoise: the bands are of a forged copy)."""

    def losses_d(
        self, bands: list[torch.Tensor], x_hat: torch.Tensor, fake_bands: list[torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The discriminator step's loss as "total", with its parts."""
        raise TypeError(f"{self.cfg.kind} has no discriminator (check model.has_discriminator before the D step)")

    def fit(self, batches: Iterable[list[torch.Tensor]]) -> None:
        """Closed-form training (kinds with trainable False) over all training batches of bands."""
        raise TypeError(f"{self.cfg.kind} is trained by gradient steps, not fitted")
