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

EMBEDDED = Path(__file__).resolve().parents[2] / "embedded" / "default.onnx"  # the engine run and bench use without --engine


def embedded_engine() -> Path:
    """The embedded default model, shipped in the package (scripts/make_embedded.py makes it)."""
    if not EMBEDDED.exists():
        raise UserError(f"the embedded default model is missing ({EMBEDDED}): reinstall edgefreq or pass --engine")
    return EMBEDDED


def open_backend(path: str | Path, device: str = "auto", threads: int = 0) -> Backend:
    """The backend for an engine file (by extension) or a run folder.

    `device` (auto | cpu | cuda) picks ONNX Runtime's provider and the torch reference's device;
    plans and rtx engines run on the GPU and pt2 packages on the device they were compiled for, so
    there a device other than auto or that one is refused rather than ignored.
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
    if fmt in ("plan", "rtx"):
        check_device(path, fmt, "cuda", device)
    sidecar = Sidecar.load(path)
    if fmt == "pt2":
        check_device(path, fmt, sidecar.device, device)
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


def check_device(path: Path, fmt: str, built_for: str, device: str) -> None:
    """Refuse, rather than ignore, a device an engine was not built for (auto takes the engine's own)."""
    if device not in ("auto", built_for):
        fix = "on the CPU run its .onnx, or a pt2 package built with --device cpu" if built_for == "cuda" else "build it again with --device cuda"
        raise UserError(f"{path.name} runs on {built_for} only ({fmt} engines run where they were built for), not on {device}: {fix}")


__all__ = ["EMBEDDED", "Backend", "embedded_engine", "open_backend"]
