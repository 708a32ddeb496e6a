"""Forged anomalies for OCR-GAN's discriminator: CutPaste then CutOut on normal images.

The training loop feeds the forged copies to D as fakes only; G never sees them.

Works on normalized N x C x H x W batches (what the data loader yields), all images at once
(boxes are drawn as masks and the patch is moved with one gather), on the images' device,
with every random number drawn from the caller's torch.Generator: same seed, same forgeries.

- CutPaste (Li et al. 2021, as in OCR-GAN): a rectangle of area U(2 %, 15 %) of the image and
  aspect ratio (width / height) log-uniform in [0.3, 3.3] is cut from a random place of the same
  image, colour-jittered, and pasted at another random place.
- CutOut (DeVries & Taylor 2017): one square hole, 20 px at the paper's 256 x 256 input, scaled
  with the input: round(20 * H / 256) x round(20 * W / 256) (10 x 10 at 128). Its centre is
  uniform over the image and it is clipped at the borders, as in the OCR-GAN code. The hole is
  filled with 0, which in normalized units is the normalization mean (the CutOut paper's fill;
  the OCR-GAN code fills black before normalizing).

Colour jitter works on normalized values, so it needs no normalization constants. For a
strength j: brightness adds b * (channel range of the image), b ~ U(-j, j); contrast scales the
patch about its per-channel mean by U(1 - j, 1 + j); saturation (3 channels) scales about the
per-pixel channel mean by U(1 - j, 1 + j); the result is clipped to the image's per-channel
[min, max]. Hue jitter (part of torchvision's ColorJitter in the OCR-GAN code) is left out: it
needs raw RGB values.

The segmentation head (model.segment, DRAEM's discriminative half) trains on `forge_mixed`: every
image gets ONE family, drawn uniformly, so the head sees shapes beyond rectangles:
- "cutpaste": CutPaste then CutOut as above (when forge.cutpaste or forge.cutout is on);
- "blobs": DRAEM-like irregular regions: Gaussian noise on a coarse grid (4, 8 or 16 cells a side,
  one per image) upsampled bicubically to the image and thresholded at U(1, 2) std, filled with a
  blend (weight U(0.3, 1)) of another image of the batch shifted by a random offset, the image
  turned by 180 degrees, or the image itself with a flat offset of U(-1, 1) normalized units;
- "scratches": thin lines (cracks, scratches): a polyline of 2-5 segments, each a random step of
  ~H/6, 1 or 2 px wide, darker or brighter by U(0.3, 1) normalized units.
Masks are what the forgery changed (CutPaste's rectangle even where the pasted patch looks alike).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from edgefreq.errors import UserError

REFERENCE_SIZE = 256  # the input size the paper's CutOut hole size refers to


@dataclass(frozen=True)
class ForgeConfig:
    """Forged-anomaly settings; the defaults are OCR-GAN's."""

    cutpaste: bool = True
    cutout: bool = True
    area: tuple[float, float] = (0.02, 0.15)  # CutPaste patch area, fraction of the image
    aspect: tuple[float, float] = (0.3, 3.3)  # CutPaste patch width / height
    color_jitter: float = 0.1  # brightness, contrast and saturation strength on the patch
    cutout_size: int = 20  # CutOut hole side in pixels at the 256 x 256 reference input

    def __post_init__(self) -> None:
        lo, hi = self.area
        if not 0.0 < lo <= hi <= 1.0:
            raise UserError(f"forge.area must be 0 < low <= high <= 1, got {self.area}")
        lo, hi = self.aspect
        if not 0.0 < lo <= hi:
            raise UserError(f"forge.aspect must be 0 < low <= high, got {self.aspect}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise UserError(f"forge.color_jitter must be in [0, 1), got {self.color_jitter}")
        if self.cutout_size < 1:
            raise UserError(f"forge.cutout_size must be at least 1 pixel, got {self.cutout_size}")

    @property
    def active(self) -> bool:
        """At least one forgery is switched on (Skip-GANomaly switches both off)."""
        return self.cutpaste or self.cutout

    def hole_size(self, height: int, width: int) -> tuple[int, int]:
        """The CutOut hole (height, width) for an input of height x width."""
        scale = self.cutout_size / REFERENCE_SIZE
        return max(1, round(scale * height)), max(1, round(scale * width))


def _uniform(generator: torch.Generator, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    """n draws from U(low, high) as float64 on `device`, drawn on the generator's device."""
    u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)
    return (low + (high - low) * u).to(device)


def _offsets(generator: torch.Generator, limit: torch.Tensor) -> torch.Tensor:
    """One integer in [0, limit_i] for every element of `limit` (int64)."""
    u = _uniform(generator, limit.numel(), 0.0, 1.0, limit.device)
    return torch.minimum((u * (limit + 1)).floor().long(), limit)


def _per_image(t: torch.Tensor) -> torch.Tensor:
    """A length-N vector shaped N x 1 x 1 x 1, to broadcast against a batch."""
    return t.view(-1, 1, 1, 1)


def _box(rows: torch.Tensor, cols: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor | int, width: torch.Tensor | int) -> torch.Tensor:
    """N x 1 x H x W bool: True inside each image's [top, top + height) x [left, left + width)."""
    inside_rows = (rows >= _per_image(top)) & (rows < _per_image(top + height))
    inside_cols = (cols >= _per_image(left)) & (cols < _per_image(left + width))
    return inside_rows & inside_cols


def _within_range(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """`values` clipped to each image's per-channel [min, max] (_jitter clips alike, with the range it already has)."""
    low, high = images.amin(dim=(2, 3), keepdim=True), images.amax(dim=(2, 3), keepdim=True)
    return torch.maximum(torch.minimum(values, high), low)


def _jitter(patch: torch.Tensor, region: torch.Tensor, images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation jitter of `patch` (stats over `region`), clipped to the image's range."""
    n, c = images.shape[:2]
    dtype, device = images.dtype, images.device
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    b = _per_image(_uniform(generator, n, -strength, strength, device).to(dtype))
    out = patch + b * (high - low)
    weight = region.to(dtype)
    mean = (out * weight).sum(dim=(2, 3), keepdim=True) / weight.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    contrast = _per_image(_uniform(generator, n, 1 - strength, 1 + strength, device).to(dtype))
    out = mean + contrast * (out - mean)
    if c == 3:
        gray = out.mean(dim=1, keepdim=True)
        saturation = _per_image(_uniform(generator, n, 1 - strength, 1 + strength, device).to(dtype))
        out = gray + saturation * (out - gray)
    return torch.maximum(torch.minimum(out, high), low)


def _cutpaste(images: torch.Tensor, cfg: ForgeConfig, generator: torch.Generator, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, h, w = images.shape
    device = images.device
    area = _uniform(generator, n, cfg.area[0], cfg.area[1], device) * (h * w)
    aspect = _uniform(generator, n, math.log(cfg.aspect[0]), math.log(cfg.aspect[1]), device).exp()
    cut_w = (area * aspect).sqrt().round().long().clamp(1, w)
    cut_h = (area / aspect).sqrt().round().long().clamp(1, h)
    src_top, src_left = _offsets(generator, h - cut_h), _offsets(generator, w - cut_w)
    dst_top, dst_left = _offsets(generator, h - cut_h), _offsets(generator, w - cut_w)
    region = _box(rows, cols, dst_top, dst_left, cut_h, cut_w)
    # Every pixel reads the pixel at the same place relative to the source box (clamped
    # outside the destination box, where the result is discarded anyway).
    src_rows = (rows + _per_image(src_top - dst_top)).clamp(0, h - 1)
    src_cols = (cols + _per_image(src_left - dst_left)).clamp(0, w - 1)
    index = (src_rows * w + src_cols).reshape(n, 1, h * w).expand(n, c, h * w)
    moved = images.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)
    if cfg.color_jitter > 0:
        moved = _jitter(moved, region, images, cfg.color_jitter, generator)
    return torch.where(region, moved, images), region


def _cutout(images: torch.Tensor, cfg: ForgeConfig, generator: torch.Generator, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = images.shape
    hole_h, hole_w = cfg.hole_size(h, w)
    last = torch.tensor([h - 1, w - 1], device=images.device).repeat(n)  # centre limits, rows then columns
    centre = _offsets(generator, last).view(n, 2)
    region = _box(rows, cols, centre[:, 0] - hole_h // 2, centre[:, 1] - hole_w // 2, hole_h, hole_w)
    return images.masked_fill(region, 0.0), region


@torch.no_grad()
def forge_with_mask(images: torch.Tensor, cfg: ForgeConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Forged copies of a normalized N x C x H x W batch and the N x 1 x H x W bool mask of the
    pixels the forgeries may have changed; `images` is left untouched."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"forge expects a float N x C x H x W tensor, got {shape}")
    if not cfg.active:
        raise ValueError("forged anomalies are switched off (cutpaste and cutout both false); do not call forge")
    _, _, h, w = images.shape
    rows = torch.arange(h, device=images.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, 1, w)
    out = images
    changed = torch.zeros((images.shape[0], 1, h, w), dtype=torch.bool, device=images.device)
    if cfg.cutpaste:
        out, region = _cutpaste(out, cfg, generator, rows, cols)
        changed |= region
    if cfg.cutout:
        out, region = _cutout(out, cfg, generator, rows, cols)
        changed |= region
    return out, changed


def _blobs(images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = images.shape
    device, dtype = images.device, images.dtype
    cells = (4, 8, 16)[int(_offsets(generator, torch.tensor([2]))[0])]
    noise = torch.randn(n, 1, cells, cells, generator=generator, device=generator.device).to(device, dtype)
    noise = torch.nn.functional.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)
    region = noise > _per_image(_uniform(generator, n, 1.0, 2.0, device).to(dtype))
    shift = _offsets(generator, torch.tensor([h - 1, w - 1]))
    other = images.roll(1, dims=0).roll((int(shift[0]), int(shift[1])), dims=(2, 3))
    turned = images.flip(2).flip(3)
    flat = images + _per_image(_uniform(generator, n, -1.0, 1.0, device).to(dtype))
    source = _per_image(_offsets(generator, torch.full((n,), 2, device=device)))
    fill = torch.where(source == 0, other, torch.where(source == 1, turned, flat))
    beta = _per_image(_uniform(generator, n, 0.3, 1.0, device).to(dtype))
    blended = images + beta * (fill - images)
    return torch.where(region, _within_range(blended, images), images), region


def _scratches(images: torch.Tensor, generator: torch.Generator, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = images.shape
    device, dtype = images.device, images.dtype
    segments = 5
    start = torch.stack([_uniform(generator, n, 0, h - 1, device), _uniform(generator, n, 0, w - 1, device)], 1)
    steps = torch.randn(n, segments, 2, generator=generator, device=generator.device, dtype=torch.float64).to(device) * (h / 6)
    points = torch.cat([start[:, None], start[:, None] + steps.cumsum(1)], 1)
    points = torch.maximum(torch.minimum(points, torch.tensor([h - 1.0, w - 1.0], device=device, dtype=torch.float64)), torch.zeros(2, device=device, dtype=torch.float64))
    used = 2 + _offsets(generator, torch.full((n,), segments - 2, device=device))  # 2-5 segments
    width = 1.0 + _offsets(generator, torch.ones(n, dtype=torch.long, device=device)).double()
    py, px = rows.double().view(1, 1, h, 1), cols.double().view(1, 1, 1, w)
    a, b = points[:, :-1], points[:, 1:]  # N x S x 2
    ay, ax = a[..., 0, None, None], a[..., 1, None, None]
    dy, dx = (b - a)[..., 0, None, None], (b - a)[..., 1, None, None]
    t = (((py - ay) * dy + (px - ax) * dx) / (dy * dy + dx * dx).clamp_min(1e-9)).clamp(0, 1)
    dist = ((py - ay - t * dy) ** 2 + (px - ax - t * dx) ** 2).sqrt()  # N x S x H x W
    live = torch.arange(segments, device=device).view(1, -1, 1, 1) < used.view(-1, 1, 1, 1)
    region = ((dist <= width.view(-1, 1, 1, 1) / 2) & live).any(1, keepdim=True)
    sign = torch.where(_uniform(generator, n, 0, 1, device) < 0.5, -1.0, 1.0)
    delta = _per_image((sign * _uniform(generator, n, 0.3, 1.0, device)).to(dtype))
    return torch.where(region, _within_range(images + delta, images), images), region


@torch.no_grad()
def forge_mixed(images: torch.Tensor, cfg: ForgeConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The segmentation head's forgeries: each image of a normalized N x C x H x W batch gets one
    family, drawn uniformly: CutPaste + CutOut as in `cfg` (left out when `cfg` switches both off),
    blobs or scratches; returns the forged copies and the N x 1 x H x W bool mask of what changed.
    Without CutPaste and CutOut, calibrate's forged validation (CutPaste + CutOut) is a family the
    head never saw."""
    n, _, h, w = images.shape
    rows = torch.arange(h, device=images.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, 1, w)
    forged = [forge_with_mask(images, cfg, generator)] if cfg.active else []
    forged += [_blobs(images, generator), _scratches(images, generator, rows, cols)]
    family = _per_image(_offsets(generator, torch.full((n,), len(forged) - 1, device=images.device)))
    out, mask = forged[-1]
    for i in range(len(forged) - 2, -1, -1):
        out = torch.where(family == i, forged[i][0], out)
        mask = torch.where(family == i, forged[i][1], mask)
    return out, mask


def forge_batch(images: torch.Tensor, cfg: ForgeConfig, generator: torch.Generator) -> torch.Tensor:
    """Forged copies (CutPaste then CutOut, as switched on in `cfg`) of a normalized batch."""
    return forge_with_mask(images, cfg, generator)[0]
