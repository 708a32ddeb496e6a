"""RIAD-style inpainting (Zavrtanik et al. 2021, "Reconstruction by inpainting"; model.inpaint).

Training: the generator sees each image with a third of its grid cells erased (set to 0, the
normalized mean) and learns the whole clean image, so it must fill every erased cell from its
surroundings. The cell side k is drawn per image from CELLS and the cells are dealt at random into
PARTS disjoint sets, one of which is erased.

Inference (AnomalyModel.restore): for every k in CELLS, the image is split into PARTS fixed
disjoint cell sets (drawn once from a fixed seed, so the model is deterministic and exports as
constants); each set is erased in turn and inpainted, and the inpainted cells are pasted into one
reconstruction per k. A defect is never visible to the pass that redraws it, so it is not copied
through as an autoencoder copies it. The score's reconstruction is the mean over the scales (RIAD
averages the scales' error maps instead; averaging the reconstructions keeps one x_hat, which
the segmentation head and every map take). Cost: len(CELLS) x PARTS generator passes a frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CELLS = (2, 4, 8, 16)  # cell sides in pixels (RIAD's K)
PARTS = 3  # disjoint cell sets per scale (RIAD's n)
MASK_SEED = 0  # the inference partition's seed


def cell_masks(size: tuple[int, int], cell: int, assign: torch.Tensor) -> torch.Tensor:
    """PARTS x H x W {0, 1} masks from a cell-to-set assignment (rows x cols of ints in [0, PARTS))."""
    h, w = size
    sets = F.one_hot(assign, PARTS).permute(2, 0, 1).float()  # PARTS x rows x cols
    return sets.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w]


def _grid(size: tuple[int, int], cell: int) -> tuple[int, int]:
    return -(-size[0] // cell), -(-size[1] // cell)


def inference_masks(size: tuple[int, int]) -> torch.Tensor:
    """len(CELLS) x PARTS x H x W: the fixed partitions of the inference passes (each scale's sets
    cover every pixel exactly once)."""
    gen = torch.Generator().manual_seed(MASK_SEED)
    out = []
    for cell in CELLS:
        rows, cols = _grid(size, cell)
        out.append(cell_masks(size, cell, torch.randint(PARTS, (rows, cols), generator=gen)))
    return torch.stack(out)


def erase_cells(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The training input: each image of N x C x H x W with one random cell set erased (at a cell
    side drawn from CELLS per image)."""
    n, _, h, w = images.shape
    keep = torch.empty(n, 1, h, w)
    for i in range(n):
        cell = CELLS[int(torch.randint(len(CELLS), (1,), generator=gen))]
        rows, cols = _grid((h, w), cell)
        masks = cell_masks((h, w), cell, torch.randint(PARTS, (rows, cols), generator=gen))
        keep[i, 0] = 1 - masks[int(torch.randint(PARTS, (1,), generator=gen))]
    return images * keep.to(images.device, images.dtype)
