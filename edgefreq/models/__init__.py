"""The model family: one config (ModelConfig), one constructor signature, a registry by name.

    model = build_model(ModelConfig(kind="ocrgan", ngf=16), in_channels=3, levels=2, size=64)
    score, amap = model.score(bands)      # bands = edgefreq.kernels.decouple(images, levels)

Every model is an AnomalyModel (base.py: the interface the training loop, eval, export and
runtime rely on), built as MODELS[kind](cfg, in_channels, levels, size).
"""

from __future__ import annotations

from collections.abc import Callable

from edgefreq.errors import UserError

from .base import AnomalyModel
from .complexity import count_parameters, flops
from .config import KINDS, SCORING_KEYS, ModelConfig
from .losses import FrequencyLoss, frequency_weights
from .ocrgan import OCRGAN
from .variation import Variation
from .wfdl import WFDL

ModelCtor = Callable[[ModelConfig, int, int, tuple[int, int]], AnomalyModel]

# "skipganomaly" is OCR-GAN with its preset (config.KIND_PRESETS): same code, one band, no CS.
MODELS: dict[str, ModelCtor] = {"ocrgan": OCRGAN, "skipganomaly": OCRGAN, "wfdl": WFDL, "variation": Variation}
assert set(MODELS) == set(KINDS)


def build_model(cfg: ModelConfig, in_channels: int, levels: int, size: int | tuple[int, int] = 256) -> AnomalyModel:
    """The model `cfg.kind` for `levels` FD bands of in_channels x size (an int or (height, width))."""
    size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if in_channels not in (1, 3):
        raise UserError(f"models take 1 or 3 input channels, got {in_channels}")
    if not isinstance(levels, int) or levels < 1:
        raise UserError(f"FD levels must be a positive integer, got {levels!r}")
    if min(size) < 2:
        raise UserError(f"input size {size[0]}x{size[1]} is too small for any model")
    return MODELS[cfg.kind](cfg, in_channels, levels, size)


__all__ = [
    "MODELS",
    "AnomalyModel",
    "FrequencyLoss",
    "ModelConfig",
    "SCORING_KEYS",
    "build_model",
    "count_parameters",
    "flops",
    "frequency_weights",
]
