"""Ground-truth masks at the model's size, read with the one image reader (edgefreq.image_file)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgefreq.errors import UserError
from edgefreq.image_file import load_image
from edgefreq.kernels.preprocess import Preprocess, roi_box
from edgefreq.kernels.register import warp_roi


def load_mask(path: str | Path | None, spec: Preprocess, image_shape: tuple[int, ...], pose: np.ndarray | None = None) -> np.ndarray:
    """A ground-truth mask at the model size: float32 `spec.size` (H x W) with values in {0, 1}.

    The mask gets the image's geometry: the same ROI crop, then a nearest-neighbour resize
    (cv2.INTER_NEAREST_EXACT, which samples pixel centres like the image's bilinear resize).
    Any non-zero mask pixel is a defect. No mask (`path` None, a good image) gives zeros.
    `image_shape` is the shape of the original image file (H x W or H x W x C). With registration
    (`spec.register` rigid) the mask is moved by its image's `pose` (kernels.frame_pose, needed then;
    edgefreq.scoring.score_paths returns it) into the reference pose.
    """
    height, width = spec.size
    if path is None:
        return np.zeros((height, width), np.float32)
    mask = load_image(path)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != tuple(image_shape[:2]):
        raise UserError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{image_shape[1]}x{image_shape[0]}; masks must have the image's size"
        )
    x, y, w, h = roi_box(spec, mask.shape[0], mask.shape[1])
    if spec.register != "none":
        if pose is None:
            raise ValueError("load_mask: a registered spec needs its image's pose to move the mask with it")
        mask = warp_roi(mask, (x, y, w, h), pose, nearest=True)
    crop = np.ascontiguousarray(mask[y : y + h, x : x + w])
    resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    return (resized > 0).astype(np.float32)
