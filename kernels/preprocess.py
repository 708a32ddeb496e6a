"""What a camera frame becomes before the model: the one preprocessing definition.

Training, calibration, evaluation and both runtime paths (OpenCV on CPU, the fused Triton kernel
on GPU) all follow this spec, step by step:

1. crop the ROI (x, y, w, h in frame pixels; none = whole frame),
   1b. with `register: rigid`, move the ROI into the reference pose of the good parts
   (kernels.register: rotation and shift, on the CPU; the reference is fitted by train),
2. convert to float32 and resize to `size` (height, width): `resize` "area" (cv2.INTER_AREA,
   the default: antialiased, each output pixel averages the source cell it covers) or "linear"
   (cv2.INTER_LINEAR), on the float image (no uint8 rounding), OpenCV's own code, not the IPP
   variant x86 wheels use, so x86, ARM/Jetson and the Triton kernel compute the same thing
   (kernels.resize),
3. channel order: BGR frame -> RGB model input, or -> gray (0.299 R + 0.587 G + 0.114 B);
   a gray frame feeding a 3-channel model is replicated,
4. scale to [0, 1] and normalize per channel: (v / 255 - mean) / std,
5. FD into `levels` bands (kernels.pyramid).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from edgefreq.errors import UserError

from .fd_opencv import decouple_chw
from .pyramid import check_size
from .register import REGISTER_MODES, decode_reference, roi_pose, warp_roi
from .resize import RESIZE_MODES, resize_image

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B, as cv2.cvtColor(COLOR_BGR2GRAY)


@dataclass(frozen=True)
class Preprocess:
    """Frame -> model input. Stored in every checkpoint and sidecar."""

    size: tuple[int, int] = (256, 256)
    roi: tuple[int, int, int, int] | None = None
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    levels: int = 2
    clip_high: bool = False
    resize: str = "area"  # "area" (cv2.INTER_AREA, antialiased) or "linear" (cv2.INTER_LINEAR)
    register: str = "none"  # "none" (fixtured parts) or "rigid" (rotation + shift to the reference pose)
    reference: str | None = None  # the reference pose (kernels.register), fitted by train when register is rigid

    def __post_init__(self) -> None:
        if self.register not in REGISTER_MODES:
            raise UserError(f"preprocess.register must be one of {', '.join(REGISTER_MODES)}, got {self.register!r}")
        if self.reference is not None:
            decode_reference(self.reference)
        if self.resize not in RESIZE_MODES:
            raise UserError(f"preprocess.resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.channels not in (1, 3):
            raise UserError(f"preprocess.channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise UserError(f"preprocess.mean and .std need {self.channels} values each")
        if any(s <= 0 for s in self.std):
            raise UserError("preprocess.std values must be positive")
        if len(self.size) != 2 or min(self.size) < 1:
            raise UserError(f"preprocess.size must be (height, width), got {self.size}")
        if self.roi is not None and (len(self.roi) != 4 or self.roi[2] < 1 or self.roi[3] < 1 or min(self.roi[:2]) < 0):
            raise UserError(f"preprocess.roi must be (x, y, w, h) with w, h >= 1, got {self.roi}")
        check_size(self.size[0], self.size[1], self.levels)


def check_frame(frame: np.ndarray) -> np.ndarray:
    """A frame as H x W x C uint8 with C in (1, 3), or a UserError saying what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise UserError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise UserError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3):
        raise UserError(f"frame must be H x W (gray) or H x W x 3 (BGR), got shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise UserError(f"frame is empty: shape {frame.shape}")
    return frame


def roi_box(spec: Preprocess, height: int, width: int) -> tuple[int, int, int, int]:
    """The ROI as (x, y, w, h) inside a height x width frame, or a UserError if it does not fit."""
    if spec.roi is None:
        return 0, 0, width, height
    x, y, w, h = spec.roi
    if x + w > width or y + h > height:
        raise UserError(f"ROI {spec.roi} (x, y, w, h) does not fit in a {width}x{height} frame")
    return x, y, w, h


def frame_pose(frame: np.ndarray, spec: Preprocess) -> np.ndarray | None:
    """With register rigid, the 2 x 3 matrix that moves the (checked) frame's ROI into the reference
    pose (what its ground-truth mask must be moved by too); None for fixtured parts."""
    if spec.register == "none":
        return None
    if spec.reference is None:
        raise UserError("preprocess.register is rigid but the spec holds no reference pose: `edgefreq train` fits it")
    return roi_pose(frame, roi_box(spec, frame.shape[0], frame.shape[1]), decode_reference(spec.reference))


def registered(frame: np.ndarray, spec: Preprocess, pose: np.ndarray | None = None) -> np.ndarray:
    """Step 1b: with register rigid, a copy of the (checked) frame whose ROI is in the reference pose
    (`pose` from frame_pose, estimated here when not given); else the frame itself."""
    if spec.register == "none":
        return frame
    pose = frame_pose(frame, spec) if pose is None else pose
    return warp_roi(frame, roi_box(spec, frame.shape[0], frame.shape[1]), pose)


def without_registration(spec: Preprocess) -> Preprocess:
    """The spec for frames already registered (the runtime registers once, then runs FD)."""
    return replace(spec, register="none", reference=None) if spec.register != "none" else spec


def preprocess_frame(frame: np.ndarray, spec: Preprocess, pose: np.ndarray | None = None) -> np.ndarray:
    """Steps 1-4 on the CPU with OpenCV: uint8 frame -> C x H x W float32 normalized image (`pose`:
    registered's)."""
    frame = registered(check_frame(frame), spec, pose)
    x, y, w, h = roi_box(spec, frame.shape[0], frame.shape[1])
    crop = frame[y : y + h, x : x + w].astype(np.float32)
    img = resize_image(crop, spec.size, spec.resize)
    img = img.reshape(spec.size[0], spec.size[1], frame.shape[2])
    if frame.shape[2] == 3 and spec.channels == 3:
        img = img[:, :, ::-1]
    elif frame.shape[2] == 3:
        r, g, b = GRAY_WEIGHTS
        img = (img[:, :, 2:3] * r + img[:, :, 1:2] * g + img[:, :, 0:1] * b).astype(np.float32)
    elif spec.channels == 3:
        img = np.repeat(img, 3, axis=2)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    img = (img * np.float32(1.0 / 255.0) - mean) / std
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def frame_to_bands_opencv(frame: np.ndarray, spec: Preprocess) -> list[np.ndarray]:
    """The CPU runtime path: uint8 frame -> `spec.levels` bands, each C x H x W float32."""
    return decouple_chw(preprocess_frame(frame, spec), spec.levels, spec.clip_high)
