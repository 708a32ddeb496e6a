"""ONNX Runtime backend (.onnx): the embedded default, CPU; the CUDA provider when installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefreq.errors import UserError
from edgefreq.export.sidecar import Sidecar

from .base import Backend, Band, as_numpy, check_engine_io

DEVICES = ("auto", "cpu", "cuda")


class OnnxRuntimeBackend(Backend):
    """An .onnx export (fp32, fp16 or int8 Q/DQ) on ONNX Runtime; any batch size."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, sidecar: Sidecar, device: str = "auto", threads: int = 0) -> None:
        import onnxruntime as ort

        if device not in DEVICES:
            raise UserError(f"onnxruntime device must be one of {', '.join(DEVICES)}, got {device!r}")
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not has_cuda:
            raise UserError("onnxruntime has no CUDA provider here: pip install onnxruntime-gpu, or use device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda and device != "cpu" else ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own error types for a graph it cannot load
            raise UserError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}: {sidecar.remake}") from None
        check_engine_io(
            str(path),
            [(i.name, i.shape) for i in self._session.get_inputs()],
            [(o.name, o.shape) for o in self._session.get_outputs()],
            sidecar.preprocess, sidecar.inputs, sidecar.outputs, sidecar.remake,
        )
        on_cuda = self._session.get_providers()[0] == "CUDAExecutionProvider"
        super().__init__(
            sidecar.preprocess,
            sidecar.calibration,
            sidecar.model,
            sidecar.engine_id,
            "cuda:0" if on_cuda else "cpu",
            sidecar.batch.max,
        )
        self._inputs = list(sidecar.inputs)
        self._outputs = ["score", "amap"]  # by name: check_engine_io made sure both exist

    def _infer(self, bands: list[Band]) -> tuple[np.ndarray, np.ndarray]:
        score, amap = self._session.run(self._outputs, {name: as_numpy(b) for name, b in zip(self._inputs, bands)})
        return score, amap

    def close(self) -> None:
        self._session = None
