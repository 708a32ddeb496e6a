"""Inference backends behind one interface (base.Backend): infer(bands) -> (score, amap).

    open_backend("bottle.onnx")             onnxruntime (CPU; its CUDA provider when installed)
    open_backend("bottle.fp16.sm87.plan")   tensorrt (GPU)
    open_backend("bottle.fp16.sm86.rtx")    rtx (TensorRT-RTX, RTX GPU)
    open_backend("bottle.cpu.pt2")          inductor (AOTInductor package, CPU or GPU)
    open_backend("runs/bottle")             torch (a run folder: the reference)

Every engine file is loaded through its sidecar's checks (export/sidecar.py: present, valid,
sha256, and for plans / rtx engines / pt2 packages the TensorRT / TensorRT-RTX / torch version and
GPU), so a wrong engine is refused with one line that says how to rebuild it. Backend modules
import their libraries (onnxruntime, tensorrt, tensorrt_rtx) only when opened.
"""

from __future__ import annotations

from pathlib import Path

from edgefreq.errors import UserError
from edgefreq.export.sidecar import FORMATS, Sidecar

from .base import Backend


def open_backend(path: str | Path, device: str = "auto", threads: int = 0) -> Backend:
    """The backend for an engine file (by extension) or a run folder.

    `device` applies to ONNX Runtime (auto | cpu | cuda) and the torch reference (auto | cpu |
    cuda); plans and rtx engines always run on the GPU and pt2 packages on the device they were compiled for.
    `threads` (0 = the library's default) caps the CPU threads of ONNX Runtime and torch: on a
    busy machine one thread is often faster than two that wait for each other.
    """
    path = Path(path)
    if threads < 0:
        raise UserError(f"threads must be >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if path.is_dir():
        from .reference import TorchBackend

        return TorchBackend(path, device)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        what = "not an engine (.onnx, .plan, .rtx, .pt2) or a run folder" if path.exists() else "not found"
        raise UserError(f"{path}: {what}")
    sidecar = Sidecar.load(path)
    if fmt == "onnx":
        from .ort import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, sidecar, device, threads)
    if fmt == "plan":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(path, sidecar)
    if fmt == "rtx":
        from .rtx import RTXBackend

        return RTXBackend(path, sidecar)
    from .inductor import InductorBackend

    return InductorBackend(path, sidecar)


__all__ = ["Backend", "open_backend"]
