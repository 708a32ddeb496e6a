"""ModelConfig: the one config every model kind is built from (every key has a default).

Keys left at None take the kind's preset (KIND_PRESETS). "skipganomaly" is OCR-GAN with CS and
forged anomalies off, run with FD off (levels 1): a preset of the same code, not separate code.
The OCR-GAN ablation (the paper's Table V) is kind + cs + forged + the FD levels:

    baseline            kind: skipganomaly                        levels 1
    + forged            kind: ocrgan, cs: false, forged: true     levels 1
    + FD                kind: ocrgan, cs: false, forged: false    levels 2
    + FD + CS           kind: ocrgan, cs: true,  forged: false    levels 2
    + FD + CS + forged  kind: ocrgan (the paper's OCR-GAN)        levels 2
    3 branches          kind: ocrgan, forged: false               levels 3
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefreq.errors import UserError

KINDS = ("ocrgan", "skipganomaly", "wfdl", "variation")
CONTENT_LOSSES = ("l1", "l2", "freq")
# "mean": the papers' image score; "max": the peak of the smoothed anomaly map, which a small local
# defect moves far more than it moves the mean over the whole frame.
SCORE_REDUCTIONS = ("mean", "max")
# The per-pixel error between the image and its reconstruction (models/maps.py).
MAPS = ("sq", "ssim", "msgms")
# "pixel": the map is z-scored per pixel by the mean and std of good images' maps (calibration).
NORMALIZATIONS = ("none", "pixel")
# What the score is made of; training never reads these, so a trained run can be rescored
# (`edgefreq calibrate RUN --set model.map=msgms`) without training again. A segmentation head
# (model.segment) is trained on the smoothed map, so there map and map_sigma are training keys.
SCORING_KEYS = ("map", "map_sigma", "normalize", "std_floor", "score_reduce", "lambda_score")
SEGMENTER_INPUT_KEYS = ("map", "map_sigma")


def rescorable_keys(cfg: "ModelConfig") -> tuple[str, ...]:
    """The scoring keys training did not read for `cfg`: all of SCORING_KEYS, less the map the
    segmentation head was trained on."""
    return tuple(k for k in SCORING_KEYS if not (cfg.segment and k in SEGMENTER_INPUT_KEYS))

# Values for keys left at None, per kind; a kind in FIXED refuses any other value for those keys.
KIND_PRESETS: dict[str, dict[str, object]] = {
    "ocrgan": {"cs": True, "forged": True, "content_loss": "l1"},
    "skipganomaly": {"cs": False, "forged": False, "content_loss": "l1"},
    "wfdl": {"cs": False, "forged": False, "content_loss": "freq"},
    # the golden template of classical machine vision: the mean good image, z-scored per pixel
    "variation": {"cs": False, "forged": False, "content_loss": "l1"},
}
FIXED: dict[str, tuple[str, ...]] = {
    "skipganomaly": ("cs", "forged"), "wfdl": ("cs", "forged"), "variation": ("cs", "forged"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Model architecture, losses and score. Defaults are the papers' settings (input 256)."""

    kind: str = "ocrgan"  # one of KINDS
    # OCR-GAN / Skip-GANomaly
    ngf: int = 64  # U-Net base width: level i has ngf * min(2^i, 8) channels
    ndf: int = 64  # discriminator base width (DCGAN: doubles per stage)
    depth: int | None = None  # U-Net levels; None = as many halvings as the input size allows (8 at 256)
    cs: bool | None = None  # Channel Selection between the band encoders (needs levels >= 2)
    forged: bool | None = None  # the training loop feeds forged anomalies (CutPaste + CutOut) to D as fakes
    nz: int = 100  # discriminator latent feature size
    denoise: bool = False  # training: reconstruct the clean image from a forged copy (DRAEM's objective)
    # RIAD's objective (models/inpaint.py): train on images with grid cells erased; score the image
    # pasted together from inpaintings of disjoint cell sets (12 generator passes a frame)
    inpaint: bool = False
    # DRAEM's discriminative half (models/segmenter.py): a U-Net of this base width on (x, x_hat, the
    # z-scored error map), trained on forged anomalies after the reconstruction; 0 = off
    segment: int = 0
    w_adv: float = 1.0
    w_con: float = 50.0
    w_lat: float = 1.0
    # every kind
    content_loss: str | None = None  # "l1" | "l2" | "freq" (weighted frequency-domain L1, losses.py)
    # the score (SCORING_KEYS): map -> Gaussian smoothing -> [per-pixel z-score] -> mean or max
    # [-> OCR-GAN: mixed with the latent term, both standardized on calibration data]
    map: str = "sq"  # per-pixel error: "sq" squared error (the papers), "ssim" 1 - SSIM, "msgms" 1 - multi-scale GMS
    map_sigma: float = 4.0  # Gaussian smoothing of the anomaly map, in pixels (0 = none)
    normalize: str = "none"  # "pixel": z-score the map by good images' per-pixel mean and std (set by calibrate)
    std_floor: float = 0.1  # per-pixel std floor, as a fraction of the median per-pixel std (flat regions)
    score_reduce: str = "mean"  # "mean" of the map (the papers) or its "max"
    lambda_score: float = 0.9  # OCR-GAN: score = lambda * content + (1 - lambda) * latent, each standardized
    freq_floor: float = 0.1  # frequency-loss weight at DC (the weight is floor + normalized radius)
    freq_pixel: float = 1.0  # weight of the pixel L1 term added to the frequency loss (0 + floor 0 = the paper, signed radius)
    # WFDL autoencoder (Table I): channels per encoder stage, scaled by wfdl_width
    wfdl_channels: tuple[int, ...] = (32, 32, 64, 64, 128, 128, 256, 256)
    wfdl_width: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"model.kind: unknown model {self.kind!r} (choose from {', '.join(KINDS)})")
        for key, preset in KIND_PRESETS[self.kind].items():
            value = getattr(self, key)
            if value is None:
                object.__setattr__(self, key, preset)
            elif key in FIXED.get(self.kind, ()) and value != preset:
                raise UserError(
                    f"model.{key}: {self.kind} always has {key}: {str(preset).lower()} "
                    f"(for ablations use kind: ocrgan with {key}: {str(value).lower()})"
                )
        if self.score_reduce not in SCORE_REDUCTIONS:
            raise UserError(f"model.score_reduce: unknown reduction {self.score_reduce!r} (choose from {', '.join(SCORE_REDUCTIONS)})")
        if self.denoise and self.kind == "variation":
            raise UserError("model.denoise: the variation model is fitted, not trained; it has nothing to denoise")
        if self.inpaint and self.kind == "variation":
            raise UserError("model.inpaint: the variation model is fitted, not trained; it has nothing to inpaint")
        if self.inpaint and self.denoise:
            raise UserError("model.inpaint and model.denoise both replace the training input: choose one")
        if self.segment < 0:
            raise UserError(f"model.segment must be >= 0 (the segmentation head's base width; 0 = off), got {self.segment}")
        if self.map not in MAPS:
            raise UserError(f"model.map: unknown anomaly map {self.map!r} (choose from {', '.join(MAPS)})")
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"model.normalize: unknown normalization {self.normalize!r} (choose from {', '.join(NORMALIZATIONS)})")
        if not self.std_floor > 0:
            raise UserError(f"model.std_floor must be > 0 (a fraction of the median per-pixel std), got {self.std_floor}")
        if self.content_loss not in CONTENT_LOSSES:
            raise UserError(f"model.content_loss: unknown loss {self.content_loss!r} (choose from {', '.join(CONTENT_LOSSES)})")
        for key in ("ngf", "ndf", "nz"):
            if getattr(self, key) < 1:
                raise UserError(f"model.{key} must be a positive integer, got {getattr(self, key)}")
        if self.depth is not None and self.depth < 1:
            raise UserError(f"model.depth must be a positive integer or null, got {self.depth}")
        if not 0.0 <= self.lambda_score <= 1.0:
            raise UserError(f"model.lambda_score must be in [0, 1], got {self.lambda_score}")
        for key in ("map_sigma", "freq_floor", "freq_pixel", "w_adv", "w_con", "w_lat"):
            if getattr(self, key) < 0:
                raise UserError(f"model.{key} must be >= 0, got {getattr(self, key)}")
        if not self.wfdl_channels or min(self.wfdl_channels) < 1 or self.wfdl_width <= 0:
            raise UserError("model.wfdl_channels must be positive integers and model.wfdl_width > 0")
