"""The WFDL autoencoder (Nakanishi et al.): a residual conv autoencoder trained with the weighted
frequency-domain L1 loss (losses.FrequencyLoss; content_loss: l2 gives the paper's L2 baseline).

Encoder (Table I at 256 x 256): residual blocks 128x128x32, 64x64x32, 32x32x64, 16x16x64,
8x8x128, 4x4x128, 2x2x256 (each halving), then 2x2x256 (stride 1); the decoder mirrors it with
nearest x2 upsampling before each block and a 3x3 conv to the image. Other sizes: as many
halving blocks as reach 2 x 2, channels from the start of `wfdl_channels` (its last entry
repeated if more are needed), all scaled by `wfdl_width` (the CPU-budget knob). With FD on, the
bands come in as stacked channels; the target is always their sum (the image).
Score: the shared ScoreHead on the model's map (the paper's: mean squared pixel error); no latent term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgefreq.errors import UserError

from .base import AnomalyModel, halvings
from .config import ModelConfig
from .losses import content_loss


class ResidualBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BatchNorm, projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), ResidualBlock(c_in, c_out))


class WFDL(AnomalyModel):
    def __init__(self, cfg: ModelConfig, in_channels: int, levels: int, size: tuple[int, int]) -> None:
        super().__init__(cfg, in_channels, levels, size)
        n_down = halvings(size)
        while n_down > 0 and min(size) >> n_down < 2:
            n_down -= 1
        if n_down == 0:
            raise UserError(f"wfdl needs an input whose sides halve at least once to >= 2 pixels, got {size[0]}x{size[1]}")
        listed = list(cfg.wfdl_channels) + [cfg.wfdl_channels[-1]] * (n_down + 1)
        ch = [max(1, round(c * cfg.wfdl_width)) for c in listed[: n_down + 1]]
        self.encoder = nn.Sequential(
            *(ResidualBlock(in_channels * levels if i == 0 else ch[i - 1], ch[i], 2) for i in range(n_down)),
            ResidualBlock(ch[n_down - 1], ch[n_down]),
        )
        self.decoder = nn.Sequential(
            ResidualBlock(ch[n_down], ch[n_down - 1]),
            *(up_block(ch[i], ch[max(i - 1, 0)]) for i in range(n_down - 1, -1, -1)),
            nn.Conv2d(ch[0], in_channels, 3, 1, 1),
        )
        self.content = content_loss(cfg.content_loss, cfg.freq_floor, cfg.freq_pixel)

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters()) + list(self.decoder.parameters())

    def reconstruct(self, bands: list[torch.Tensor]) -> torch.Tensor:
        self.check_bands(bands)
        return self.decoder(self.encoder(torch.cat(bands, dim=1)))

    def losses_g(self, bands: list[torch.Tensor], clean: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x_hat = self.reconstruct(bands)
        loss = self.content(x_hat, self.target(bands) if clean is None else clean)
        return {"total": loss, "content": loss}, x_hat
