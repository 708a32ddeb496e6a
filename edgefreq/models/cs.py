"""Channel Selection (CS): soft channel attention across the band encoders (OCR-GAN Sec. III-C).

The branch features are summed, global-average-pooled, reduced by Linear(C, d), and mapped by
one Linear(d, C) per branch; a softmax ACROSS branches gives each branch's channel weights
(they sum to 1 per channel), and each branch's features are scaled by its weights.
d = max(C / 2, 32). A registered module: trained and saved with the model (DESIGN decision 3).
"""

from __future__ import annotations

import torch
from torch import nn


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
