"""edgefreq.data.forge: CutPaste + CutOut forgeries on normalized batches."""

from __future__ import annotations

import pytest
import torch

from edgefreq.data import ForgeConfig, forge_batch, forge_with_mask
from edgefreq.errors import UserError


def _images(n: int = 6, c: int = 3, h: int = 64, w: int = 48) -> torch.Tensor:
    """Smooth, position-dependent images in [-1, 1], so a moved patch always differs."""
    rows = torch.linspace(-1, 1, h).view(1, 1, h, 1)
    cols = torch.linspace(-1, 1, w).view(1, 1, 1, w)
    phase = torch.arange(n * c, dtype=torch.float32).view(n, c, 1, 1)
    return torch.sin(3 * rows + 2 * cols + phase) * 0.9


def _bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_forge_changes_only_inside_the_regions_and_leaves_input() -> None:
    images = _images()
    before = images.clone()
    forged, mask = forge_with_mask(images, ForgeConfig(), _gen(0))
    assert torch.equal(images, before)
    assert forged.shape == images.shape and mask.shape == (6, 1, 64, 48) and mask.dtype == torch.bool
    changed = (forged != images).any(dim=1, keepdim=True)
    assert not (changed & ~mask).any()
    assert changed.flatten(1).any(dim=1).all()  # every image got forged
    assert (mask.flatten(1).float().mean(dim=1) <= 0.15 + (0.1 * 0.1) + 1e-6).all()  # patch + hole at most


def test_cutpaste_patch_is_one_rectangle_of_the_configured_size() -> None:
    images = _images(n=16, h=80, w=60)
    cfg = ForgeConfig(cutout=False, color_jitter=0.0)
    forged, mask = forge_with_mask(images, cfg, _gen(1))
    for i in range(16):
        m = mask[i, 0]
        top, bottom, left, right = _bbox(m)
        assert m.sum() == (bottom - top) * (right - left)  # a filled rectangle
        area = (bottom - top) * (right - left) / (80 * 60)
        aspect = (right - left) / (bottom - top)
        assert 0.02 * 0.8 <= area <= 0.15 * 1.2  # rounding of the sides
        assert 0.3 * 0.7 <= aspect <= 3.3 / 0.7
        # Without jitter the patch holds the image's own pixels, moved: every value appears in the source.
        patch = forged[i][:, m]
        assert torch.isin(patch, images[i]).all()


def test_cutout_hole_scales_with_input_and_is_zero() -> None:
    cfg = ForgeConfig(cutpaste=False)
    assert cfg.hole_size(256, 256) == (20, 20) and cfg.hole_size(128, 64) == (10, 5)
    images = _images(n=8, h=128, w=128) + 2.0  # no zeros in the input
    forged, mask = forge_with_mask(images, cfg, _gen(2))
    assert torch.equal(forged == 0, mask.expand_as(forged))
    for i in range(8):
        top, bottom, left, right = _bbox(mask[i, 0])
        assert bottom - top <= 10 and right - left <= 10  # clipped at the borders, never bigger


def test_forge_reproducible_and_seed_dependent() -> None:
    images = _images()
    a = forge_batch(images, ForgeConfig(), _gen(5))
    b = forge_batch(images, ForgeConfig(), _gen(5))
    c = forge_batch(images, ForgeConfig(), _gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_forge_gray_images_and_jitter_stays_in_range() -> None:
    images = _images(n=4, c=1, h=32, w=32)
    forged = forge_batch(images, ForgeConfig(cutout=False, color_jitter=0.5), _gen(3))
    assert forged.shape == images.shape
    low, high = images.amin(dim=(1, 2, 3)), images.amax(dim=(1, 2, 3))
    assert (forged.amin(dim=(1, 2, 3)) >= low - 1e-6).all() and (forged.amax(dim=(1, 2, 3)) <= high + 1e-6).all()


def test_forge_config_validation_and_switched_off() -> None:
    with pytest.raises(UserError, match="area"):
        ForgeConfig(area=(0.2, 0.1))
    with pytest.raises(UserError, match="aspect"):
        ForgeConfig(aspect=(0.0, 2.0))
    with pytest.raises(UserError, match="cutout_size"):
        ForgeConfig(cutout_size=0)
    off = ForgeConfig(cutpaste=False, cutout=False)
    assert not off.active
    with pytest.raises(ValueError, match="switched off"):
        forge_batch(_images(), off, _gen(0))
    with pytest.raises(ValueError, match="N x C x H x W"):
        forge_batch(_images()[0], ForgeConfig(), _gen(0))
