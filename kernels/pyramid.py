"""Pyramid geometry shared by every FD implementation: level sizes and the size check.

FD with L levels splits an image into L signed bands that sum back to it (DESIGN.md decision 2):

    low = G1,  band_k = G(k+1) - G(k)  (k = 1 .. L-2),  high = image - G(L-1)

where G(k) is the image taken down L-k pyramid levels with cv2.pyrDown and brought back to full
size with as many cv2.pyrUp steps (each to the exact size of the level above it, so odd sizes
work). For L = 2 that is the paper's low = pyrUp(pyrDown(x)), high = x - low. L = 1 returns the
image itself (FD switched off, as in Skip-GANomaly).
"""

from __future__ import annotations

from edgefreq.errors import UserError

MAX_LEVELS = 6


def level_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Sizes of the pyramid levels 0 .. levels-1 (level 0 is the input); pyrDown rounds up."""
    sizes = [(height, width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def check_levels(levels: int) -> None:
    if not isinstance(levels, int) or isinstance(levels, bool) or not 1 <= levels <= MAX_LEVELS:
        raise UserError(f"FD levels must be an integer from 1 to {MAX_LEVELS}, got {levels!r}")


def check_size(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Level sizes, or a UserError when the image is too small for `levels` levels.

    Every level that is taken down must be at least 3 pixels on each side (the 5-tap filter with
    reflect-101 borders), and the coarsest level at least 2.
    """
    check_levels(levels)
    sizes = level_sizes(height, width, levels)
    ok = all(min(s) >= 3 for s in sizes[:-1]) and min(sizes[-1]) >= 2 if levels > 1 else min(sizes[0]) >= 1
    if not ok:
        need = 3
        for _ in range(levels - 2):
            need = 2 * need - 1
        raise UserError(
            f"image {height}x{width} is too small for {levels} FD levels "
            f"(needs at least {max(need, 3)}x{max(need, 3)})"
        )
    return sizes
