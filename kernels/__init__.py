"""Frequency Decoupling (FD): three implementations that agree to 1e-4.

- `decouple(images, levels, impl)`: float N x C x H x W -> `levels` bands, lowest first.
  impl = "torch" (reference, CPU/CUDA), "opencv" (CPU), "triton" (fused GPU kernel; on CPU only
  under TRITON_INTERPRET=1), or "auto" (triton on CUDA when available, else torch).
- `frame_to_bands(frames, spec, impl)`: raw uint8 camera frames -> bands, with ROI crop, resize,
  channel order and normalization (kernels.preprocess) in the same step; on CUDA one Triton launch.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch

from edgefreq.errors import UserError

from .fd_opencv import decouple_chw
from .fd_torch import decouple_torch
from .preprocess import Preprocess, check_frame, frame_pose, frame_to_bands_opencv, preprocess_frame, registered, without_registration
from .pyramid import check_levels, check_size

IMPLS = ("auto", "torch", "opencv", "triton")

__all__ = ["IMPLS", "Preprocess", "decouple", "frame_pose", "frame_to_bands", "preprocess_frame", "registered", "triton_available", "without_registration"]


def triton_available(device: torch.device) -> bool:
    """Triton can run here: on CUDA with triton installed, or on CPU under TRITON_INTERPRET=1."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def _check_images(images: torch.Tensor, levels: int) -> None:
    if not isinstance(images, torch.Tensor):
        raise UserError(f"images must be a torch tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise UserError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise UserError(f"images must be a float tensor, got {images.dtype}")
    check_levels(levels)
    check_size(images.shape[-2], images.shape[-1], levels)


def _resolve(impl: str, device: torch.device, cpu_default: str) -> str:
    """The implementation to run: auto picks triton on CUDA when it can, else torch; on CPU `cpu_default`."""
    if impl not in IMPLS:
        raise UserError(f"unknown FD implementation {impl!r} (choose from {', '.join(IMPLS)})")
    if impl == "auto":
        if device.type == "cpu":
            return cpu_default
        return "triton" if triton_available(device) else "torch"
    if impl == "triton" and not triton_available(device):
        raise UserError("the Triton FD kernel needs a CUDA device with triton installed (or TRITON_INTERPRET=1 on CPU)")
    if impl == "opencv" and device.type != "cpu":
        raise UserError("the OpenCV FD implementation runs on the CPU; move the tensor to the CPU or use impl='triton'")
    return impl


def decouple(images: torch.Tensor, levels: int = 2, impl: str = "auto", clip_high: bool = False) -> list[torch.Tensor]:
    """Split float N x C x H x W images into `levels` signed bands (lowest first) that sum to them."""
    _check_images(images, levels)
    impl = _resolve(impl, images.device, cpu_default="torch")
    if impl == "torch":
        return decouple_torch(images, levels, clip_high)
    if impl == "opencv":
        per_image = [decouple_chw(img.float().numpy(), levels, clip_high) for img in images]
        return [torch.from_numpy(np.stack([b[k] for b in per_image])).to(images.dtype) for k in range(levels)]
    from .fd_triton import decouple_triton

    return decouple_triton(images, levels, clip_high)


def frame_to_bands(frames: np.ndarray | torch.Tensor, spec: Preprocess, impl: str = "auto") -> list[torch.Tensor]:
    """Raw uint8 frames -> `spec.levels` bands, each B x C x h x w float32 on the frames' device.

    `frames` is one frame (H x W gray, H x W x C with C = 1 or 3) or a batch, always B x H x W x C
    (gray frames B x H x W x 1): a 3-D array is one frame, never a stack of gray frames. On CUDA (auto) or with impl="triton": one fused Triton launch for the whole batch; on CPU
    (auto) OpenCV; "torch" runs the same preprocessing then the torch reference FD.
    """
    device = frames.device if isinstance(frames, torch.Tensor) else torch.device("cpu")
    impl = _resolve(impl, device, cpu_default="opencv")
    if frames.ndim not in (2, 3, 4):
        raise UserError(f"frames must be H x W, H x W x C or B x H x W x C, got shape {tuple(frames.shape)}")
    if frames.shape[-1] not in (1, 3) and frames.ndim > 2:
        raise UserError(
            f"frames must end in a channel axis of 1 (gray) or 3 (BGR), got shape {tuple(frames.shape)}: "
            "a batch of gray frames is B x H x W x 1"
        )
    if impl == "triton":
        from .fd_triton import frame_to_bands_triton

        if spec.register != "none":  # registration runs on the CPU, then the fused kernel on the moved frames
            host = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
            moved = np.stack([registered(check_frame(f), spec) for f in (host if host.ndim == 4 else [host])])
            frames, spec = torch.from_numpy(moved).to(device), without_registration(spec)
        batch = torch.as_tensor(frames)
        batch = batch.reshape(1, *batch.shape[:2], -1) if batch.ndim < 4 else batch
        if batch.dtype != torch.uint8 or batch.shape[-1] not in (1, 3):
            raise UserError(f"frames must be uint8 with 1 or 3 channels, got {batch.dtype} {tuple(batch.shape)}")
        return frame_to_bands_triton(batch, spec)
    array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    batch = list(array) if array.ndim == 4 else [array]
    if impl == "torch":
        x = torch.from_numpy(np.stack([preprocess_frame(f, spec) for f in batch]))
        return decouple_torch(x, spec.levels, spec.clip_high)
    per_frame = [frame_to_bands_opencv(f, spec) for f in batch]
    return [torch.from_numpy(np.stack([b[k] for b in per_frame])) for k in range(spec.levels)]
