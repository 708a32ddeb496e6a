"""ScoreHead: raw map (+ latent) -> (image score, anomaly map), with statistics fitted on good images.

    raw    = smooth(error_map(cfg.map, x, x_hat))                     N x H x W (AnomalyModel.raw_map)
    amap   = (raw - pixel_mean) / pixel_std   if cfg.normalize == "pixel", else raw
    c      = max or mean of amap                                       (cfg.score_reduce)
    score  = c                                                          without a latent term, else
    score  = lam * (c - c_mean) / c_std + (1 - lam) * (lat - l_mean) / l_std

The statistics are buffers (identity until `fit`), computed by `edgefreq calibrate` on good images
the model never trained on, saved beside the weights (RUN/score_stats.safetensors) and traced into
the exported graph as constants, so an engine carries them under its sha256.

`fit` returns the calibration scores each computed with statistics that did NOT see that image
(leave-one-out, exact, from running sums), so the threshold is set on scores no statistic has
seen (DESIGN.md decision 6), while the engine uses the statistics of every calibration image.
The std floor is declared, not tuned: std_floor x the median per-pixel std of the same images
(and NUMERIC_FLOOR x the median per-pixel mean, which binds only on maps with almost no spread).
"""

from __future__ import annotations

import torch
from torch import nn

from edgefreq.errors import UserError

from .config import SCORING_KEYS, ModelConfig

MIN_FIT_IMAGES = 3  # leave-one-out needs two others for a std
NUMERIC_FLOOR = 1e-3  # per-pixel std >= this x the median |per-pixel mean|: float32 noise never z-scored


class ScoreHead(nn.Module):
    def __init__(self, cfg: ModelConfig, size: tuple[int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        # not persistent: the weights file never holds them; load_stats / fit set them
        self.register_buffer("pixel_mean", torch.zeros(size), persistent=False)
        self.register_buffer("pixel_std", torch.ones(size), persistent=False)
        self.register_buffer("term_stats", torch.tensor([0.0, 1.0, 0.0, 1.0]), persistent=False)  # c mean, std, latent mean, std
        self.fitted = False

    def reduce(self, amap: torch.Tensor) -> torch.Tensor:
        if self.cfg.score_reduce == "max":
            return amap.flatten(1).amax(dim=1)
        return amap.flatten(1).mean(dim=1)

    def forward(self, raw: torch.Tensor, latent: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        amap = raw
        if self.cfg.normalize == "pixel":
            amap = (raw - self.pixel_mean.to(raw.dtype)) / self.pixel_std.to(raw.dtype)
        score = self.reduce(amap)
        if latent is not None:
            s = self.term_stats.to(score.dtype)
            lam = self.cfg.lambda_score
            score = lam * (score - s[0]) / s[1] + (1.0 - lam) * (latent - s[2]) / s[3]
        return score, amap

    # --- statistics ----------------------------------------------------------------------

    def fit(
        self, raw: torch.Tensor, latent: torch.Tensor | None, probe: tuple[torch.Tensor, torch.Tensor | None] | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Set the statistics from good images' raw maps N x H x W (and latents N); returns their
        N leave-one-out scores (float64). With `probe` (raw maps and latents of N other images, e.g.
        forged copies of the same ones), also their scores, probe i under the statistics without image i."""
        n = raw.shape[0]
        if self.needs_stats(latent is not None) and n < MIN_FIT_IMAGES:
            raise UserError(f"calibration needs at least {MIN_FIT_IMAGES} good images for its statistics, got {n}")
        raw = raw.double()
        if self.cfg.normalize == "pixel":
            loo_mean, loo_std, mean, std = pixel_stats(raw, self.cfg.std_floor)
            content = self.reduce((raw - loo_mean) / loo_std)
            probe_content = None if probe is None else self.reduce((probe[0].double() - loo_mean) / loo_std)
        else:
            content = self.reduce(raw)
            probe_content = None if probe is None else self.reduce(probe[0].double())
            mean, std = torch.zeros_like(raw[0]), torch.ones_like(raw[0])
        stats = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
        scores, probe_scores = content, probe_content
        if latent is not None:
            latent = latent.double()
            c_mean, c_std = _loo_mean_std(content)
            l_mean, l_std = _loo_mean_std(latent)
            lam = self.cfg.lambda_score
            scores = lam * (content - c_mean) / c_std + (1.0 - lam) * (latent - l_mean) / l_std
            if probe is not None:
                probe_scores = lam * (probe_content - c_mean) / c_std + (1.0 - lam) * (probe[1].double() - l_mean) / l_std
            stats = torch.stack([content.mean(), _std_floor(content.std()), latent.mean(), _std_floor(latent.std())])
        self.set_stats({"pixel_mean": mean, "pixel_std": std, "term_stats": stats})
        return scores if probe is None else (scores, probe_scores)

    def stats(self) -> dict[str, torch.Tensor]:
        return {"pixel_mean": self.pixel_mean, "pixel_std": self.pixel_std, "term_stats": self.term_stats}

    def set_stats(self, stats: dict[str, torch.Tensor]) -> None:
        for name, value in stats.items():
            buffer = getattr(self, name)
            if tuple(value.shape) != tuple(buffer.shape):
                raise UserError(f"score statistics {name}: shape {tuple(value.shape)}, the model needs {tuple(buffer.shape)}: calibrate again")
            buffer.copy_(value.to(buffer.dtype))
        self.fitted = True

    def needs_stats(self, has_latent: bool = False) -> bool:
        """Whether `fit` needs several images: a z-scored map means nothing before it, and the
        mixed terms of OCR-GAN are only standardized by it (unfitted, they mix raw)."""
        return self.cfg.normalize == "pixel" or has_latent


def pixel_stats(raw: torch.Tensor, std_floor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel statistics of N good maps N x H x W (float64): (leave-one-out mean and std, N x H x W:
    map i's without map i; the mean and std of all N, H x W), every std floored (floored_std)."""
    n = raw.shape[0]
    total, total_sq = raw.sum(0), (raw * raw).sum(0)
    loo_mean = (total - raw) / (n - 1)
    loo_var = ((total_sq - raw * raw) / (n - 1) - loo_mean**2).clamp_min(0.0)
    loo_std = floored_std(loo_var.sqrt(), loo_mean, std_floor)
    mean = total / n
    std = floored_std(((total_sq / n - mean**2).clamp_min(0.0)).sqrt()[None], mean[None], std_floor)[0]
    return loo_mean, loo_std, mean, std


def floored_std(std: torch.Tensor, mean: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per-pixel std (... x H x W) floored at `fraction` x its median over the pixels, and at
    NUMERIC_FLOOR x the median |mean| (a std at the map's float32 rounding noise would turn that
    noise into z-scores), per leading index; the one floor of every per-pixel z-score."""
    median = std.flatten(-2).median(dim=-1).values
    level = mean.abs().flatten(-2).median(dim=-1).values
    floor = torch.maximum(fraction * median, NUMERIC_FLOOR * level).clamp_min(1e-12)[..., None, None]
    return torch.maximum(std, floor)


def scoring_settings(cfg: ModelConfig) -> dict[str, str]:
    """The scoring keys as strings: what statistics were fitted for (safetensors metadata)."""
    return {key: str(getattr(cfg, key)) for key in SCORING_KEYS}


def _std_floor(std: torch.Tensor) -> torch.Tensor:
    return std.clamp_min(1e-12)


def _loo_mean_std(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item, the mean and sample std of all the other items."""
    n = values.numel()
    total, total_sq = values.sum(), (values * values).sum()
    mean = (total - values) / (n - 1)
    var = ((total_sq - values * values) - (n - 1) * mean**2) / (n - 2)
    return mean, _std_floor(var.clamp_min(0.0).sqrt())
