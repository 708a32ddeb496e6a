"""OCR-GAN (Liang et al., TIP 2023) and its baseline Skip-GANomaly (the same code, one band, no CS),
in one file, top to bottom: the U-Net generator, Channel Selection, the discriminator, the model.

One U-Net generator per FD band; Channel Selection mixes the band encoders after every encoder
level (the weighted features feed the next level and the skip); the output is the sum of the
band reconstructions and the target the sum of the bands. A DCGAN discriminator gives the
adversarial loss and the latent features of the latent loss and the score.

    G loss = w_adv * BCE(D(x_hat), real) + w_con * content(x_hat, x) + w_lat * |f(x_hat) - f(x)|^2
    D loss = BCE(D(x), real) + BCE(D(x_hat), fake) + |f(x) - f(x_hat)|^2 [+ BCE(D(forged), fake)]
             on G's reconstruction of the same step, detached (no second generator forward);
             the latent term on the D side is the public Skip-GANomaly / OCR-GAN code's
    score  = lambda * content + (1 - lambda) * mean (f(x) - f(x_hat))^2, both standardized on
             calibration data (ScoreHead); content is the map's max or mean

The training loop re-initializes D when its loss collapses (train.py), as the public code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgefreq.errors import UserError

from .base import AnomalyModel, halvings
from .config import ModelConfig
from .losses import content_loss


# --- the generator: one U-Net per band -----------------------------------------------------
# The pix2pix U-Net generator (one per FD band), split into encoder levels and a decoder so
# Channel Selection can sit between the band encoders at every level.
#
# Level i has ngf * min(2^i, 8) channels. Down: LeakyReLU(0.2) -> Conv4x4/s2 -> BatchNorm (the
# outermost level is the bare conv, the innermost has no BatchNorm). Up: ReLU ->
# ConvTranspose4x4/s2 -> BatchNorm, concatenated with the skip from the same level; the outermost
# up ends in Tanh. At 256 x 256 with depth 8 the bottleneck is 1 x 1 (~54M parameters at ngf 64).

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


# --- Channel Selection between the band encoders -------------------------------------------
# Channel Selection (CS): soft channel attention across the band encoders (OCR-GAN Sec. III-C).
#
# The branch features are summed, global-average-pooled, reduced by Linear(C, d), and mapped by
# one Linear(d, C) per branch; a softmax ACROSS branches gives each branch's channel weights
# (they sum to 1 per channel), and each branch's features are scaled by its weights.
# d = max(C / 2, 32). A registered module: trained and saved with the model (DESIGN decision 3).

class ChannelSelection(nn.Module):
    def __init__(self, channels: int, branches: int) -> None:
        super().__init__()
        d = max(channels // 2, 32)
        self.squeeze = nn.Linear(channels, d)
        self.select = nn.ModuleList(nn.Linear(d, channels) for _ in range(branches))

    def weights(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """N x branches x C channel weights; they sum to 1 over the branches."""
        fused = feats[0]
        for f in feats[1:]:
            fused = fused + f
        z = self.squeeze(fused.mean(dim=(2, 3)))
        logits = torch.stack([fc(z) for fc in self.select], dim=1)
        return logits.softmax(dim=1)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        w = self.weights(feats)
        return [f * w[:, b, :, None, None] for b, f in enumerate(feats)]


# --- the discriminator ---------------------------------------------------------------------
# The DCGAN discriminator of Skip-GANomaly / OCR-GAN.
#
# Conv4x4/s2 + LeakyReLU, then Conv4x4/s2 + BatchNorm + LeakyReLU stages (channels doubling) until
# the map is at most 4 x 4, a conv over the whole remaining map to an nz-d feature (the latent
# used by the latent loss and the score), and a 1x1 conv to one real/fake LOGIT (the sigmoid lives
# in BCEWithLogits, which is AMP-safe).

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


# --- the model ------------------------------------------------------------------------

def dcgan_init(m: nn.Module) -> None:
    """The DCGAN initialization Skip-GANomaly and OCR-GAN use: conv N(0, 0.02), BatchNorm N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class OCRGAN(AnomalyModel):
    has_discriminator = True

    def __init__(self, cfg: ModelConfig, in_channels: int, levels: int, size: tuple[int, int]) -> None:
        super().__init__(cfg, in_channels, levels, size)
        if cfg.kind == "skipganomaly" and levels != 1:
            raise UserError(f"skipganomaly runs without FD: set the FD levels to 1 (got {levels}), or use kind: ocrgan")
        max_depth = halvings(size)
        self.depth = cfg.depth if cfg.depth is not None else max_depth
        if max_depth == 0 or self.depth > max_depth:
            raise UserError(
                f"model.depth {self.depth} does not fit a {size[0]}x{size[1]} input: each U-Net level halves it, "
                f"so both sides must be divisible by 2^depth (this size allows depth <= {max_depth})"
            )
        self.generators = nn.ModuleList(UNet(in_channels, in_channels, cfg.ngf, self.depth) for _ in range(levels))
        self.netd = Discriminator(in_channels, cfg.ndf, cfg.nz, size)
        self.apply(dcgan_init)
        # With one band there is nothing to select between: CS is the identity and is left out.
        self.cs = None
        if cfg.cs and levels > 1:
            self.cs = nn.ModuleList(ChannelSelection(c, levels) for c in level_channels(cfg.ngf, self.depth))
        self.content = content_loss(cfg.content_loss, cfg.freq_floor, cfg.freq_pixel)

    def generator_parameters(self) -> list[nn.Parameter]:
        params = list(self.generators.parameters())
        return params + (list(self.cs.parameters()) if self.cs is not None else [])

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.netd.parameters())

    def band_reconstructions(self, bands: list[torch.Tensor]) -> list[torch.Tensor]:
        """One reconstruction per band: the encoders run level by level, CS mixing them at each."""
        self.check_bands(bands)
        feats = list(bands)
        skips: list[list[torch.Tensor]] = []
        for level in range(self.depth):
            feats = [g.downs[level](f) for g, f in zip(self.generators, feats)]
            if self.cs is not None:
                feats = self.cs[level](feats)
            skips.append(feats)
        return [g.decode([s[b] for s in skips]) for b, g in enumerate(self.generators)]

    def reconstruct(self, bands: list[torch.Tensor]) -> torch.Tensor:
        return self.target(self.band_reconstructions(bands))

    def reinit_discriminator(self) -> None:
        """Fresh DCGAN-initialized weights for D (when D has won outright and G gets no signal)."""
        self.netd.apply(dcgan_init)
        self.netd.apply(lambda m: m.reset_running_stats() if isinstance(m, nn.BatchNorm2d) else None)

    def losses_g(self, bands: list[torch.Tensor], clean: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Gradients also reach D's parameters: zero D's gradients before the D step."""
        x = self.target(bands) if clean is None else clean
        x_hat = self.reconstruct(bands)
        logit_fake, feat_fake = self.netd(x_hat)
        with torch.no_grad():
            _, feat_real = self.netd(x)
        adv = F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))
        con = self.content(x_hat, x)
        lat = F.mse_loss(feat_fake, feat_real)
        total = self.cfg.w_adv * adv + self.cfg.w_con * con + self.cfg.w_lat * lat
        return {"total": total, "adv": adv, "content": con, "latent": lat}, x_hat

    def losses_d(
        self, bands: list[torch.Tensor], x_hat: torch.Tensor, fake_bands: list[torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Real = the bands' image; fake = G's reconstruction `x_hat` (detached here); forged bands
        (CutPaste + CutOut, from the training loop) are extra fakes. G never sees them."""
        x = self.target(bands)
        logit_real, feat_real = self.netd(x)
        logit_fake, feat_fake = self.netd(x_hat.detach())
        parts = {
            "real": F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real)),
            "fake": F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)),
            "latent": F.mse_loss(feat_fake, feat_real),
        }
        if fake_bands is not None:
            self.check_bands(fake_bands)
            logit_forged, _ = self.netd(self.target(fake_bands))
            parts["forged"] = F.binary_cross_entropy_with_logits(logit_forged, torch.zeros_like(logit_forged))
        return {"total": torch.stack(list(parts.values())).sum(), **parts}

    @property
    def latent_used(self) -> bool:
        return self.cfg.lambda_score < 1.0  # a config constant, not data: lambda 1 drops D from the engine

    def latent(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor | None:
        if not self.latent_used:
            return None
        _, f_real = self.netd(x)
        _, f_fake = self.netd(x_hat)
        return ((f_real - f_fake) ** 2).mean(dim=1)
