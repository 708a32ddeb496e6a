"""TensorRT backend (.plan): device buffers, one stream and CUDA graphs, all through torch.

The TensorRT-RTX backend (.rtx, backends/rtx.py) is this class with the other library of the
family and a runtime cache: both libraries have the same runtime API.

GPU memory is torch's (DESIGN.md decision 10): one device buffer per engine input and output,
allocated once for the plan's maximum batch, whose `data_ptr()` is bound to the execution
context with set_tensor_address; one torch CUDA stream carries the input copies,
execute_async_v3 and the copies back to pinned host buffers. For each batch size, the first call
runs plainly (set_input_shape, then enqueue, which TensorRT needs before a capture) and then
captures the enqueue into a CUDA graph; later calls with that batch size replay the graph. An
engine that cannot be captured keeps running plainly for that batch size (logged once).

Bands may be numpy arrays or torch tensors, on the CPU or already on the GPU (the Triton FD
kernel's output): GPU bands are copied device to device, after the stream waits for the stream
that made them. `device="cpu"` runs the same bookkeeping on host memory without a stream or
graphs; it exists for the tests, which drive it with a stand-in `trt` module.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from edgefreq.errors import UserError
from edgefreq.export.sidecar import Sidecar
from edgefreq.export.tensorrt import TENSORRT, Library, import_tensorrt, make_logger

from .base import Backend, Band

log = logging.getLogger("edgefreq.tensorrt")


def torch_dtype(trt: ModuleType, trt_dtype: Any) -> torch.dtype:
    """The torch dtype of a TensorRT tensor type (through numpy: trt.nptype)."""
    return torch.from_numpy(np.zeros(0, dtype=trt.nptype(trt_dtype))).dtype


class TensorRTBackend(Backend):
    """A TensorRT plan, checked against its sidecar before it is loaded (open_backend does that)."""

    name = "tensorrt"
    library: Library = TENSORRT

    def __init__(
        self,
        path: str | Path,
        sidecar: Sidecar,
        *,
        trt: ModuleType | None = None,
        device: str = "cuda",
        cuda_graphs: bool = True,
    ) -> None:
        self._trt = import_tensorrt(self.library) if trt is None else trt
        dev = torch.device(device)
        self._cuda = dev.type == "cuda"
        if self._cuda and not torch.cuda.is_available():
            raise UserError(f"{path} is a {self.library.name} engine and needs a CUDA GPU; this machine has none: use the .onnx on ONNX Runtime")
        if self._cuda and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self._sidecar = sidecar
        self._logger = make_logger(self._trt)
        self._runtime = self._trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self._engine is None:
            reason = self._logger.errors[-1] if self._logger.errors else "see the TensorRT log"
            raise UserError(f"{self.library.name} {self._trt.__version__} cannot load {path} ({reason}): {sidecar.remake}")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == self._trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in self._inputs]
        if self._inputs != list(sidecar.inputs) or sorted(outputs) != sorted(sidecar.outputs):
            raise UserError(f"{path}: engine tensors {names} do not match its sidecar: {sidecar.remake}")
        self._context = self._create_context()
        spec = sidecar.preprocess
        max_batch = int(sidecar.batch.max)
        self._band_shape = (spec.channels, *spec.size)
        shapes = {"score": (max_batch,), "amap": (max_batch, *spec.size)}
        self._buffers: dict[str, torch.Tensor] = {}
        for name in names:
            shape = shapes.get(name, (max_batch, *self._band_shape))
            self._buffers[name] = torch.empty(shape, dtype=torch_dtype(self._trt, self._engine.get_tensor_dtype(name)), device=dev)
            self._context.set_tensor_address(name, self._buffers[name].data_ptr())
        self._host = {n: torch.empty(shapes[n], dtype=torch.float32, pin_memory=self._cuda) for n in ("score", "amap")}
        self._stream = torch.cuda.Stream(dev) if self._cuda else None
        self._graphs: dict[int, torch.cuda.CUDAGraph | None] = {}
        self._use_graphs = cuda_graphs and self._cuda
        super().__init__(spec, sidecar.calibration, sidecar.model, sidecar.engine_id, str(dev), max_batch)

    def _create_context(self) -> Any:
        """The execution context (the RTX backend attaches its runtime cache here)."""
        return self._engine.create_execution_context()

    @property
    def stream_handle(self) -> int:
        return self._stream.cuda_stream if self._stream is not None else 0

    def _enqueue(self, n: int) -> None:
        """Run the engine on the first n rows of the buffers: a graph replay when one is captured."""
        graph = self._graphs.get(n)
        if graph is not None:
            graph.replay()
            return
        for name in self._inputs:
            self._context.set_input_shape(name, (n, *self._band_shape))
        if not self._context.execute_async_v3(self.stream_handle):
            reason = self._logger.errors[-1] if self._logger.errors else "see the TensorRT log"
            raise UserError(f"{self.library.name} failed to run {self.engine_id} on a batch of {n}: {reason}")
        if self._use_graphs and n not in self._graphs:
            self._graphs[n] = self._capture(n)

    def _capture(self, n: int) -> torch.cuda.CUDAGraph | None:
        """The enqueue for batch n as a CUDA graph (shapes already set and run once), or None."""
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
                ok = self._context.execute_async_v3(self.stream_handle)
        except RuntimeError as exc:
            log.warning("CUDA graph capture failed for %s at batch %d (%s); running it without a graph", self.engine_id, n, exc)
            return None
        return graph if ok else None

    def _infer(self, bands: list[Band]) -> tuple[np.ndarray, np.ndarray]:
        n = int(bands[0].shape[0])
        if self._stream is not None:
            self._stream.wait_stream(torch.cuda.current_stream(self._stream.device))
        with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
            for name, band in zip(self._inputs, bands):
                self._buffers[name][:n].copy_(torch.as_tensor(band), non_blocking=True)
            self._enqueue(n)
            for name, host in self._host.items():
                host[:n].copy_(self._buffers[name][:n], non_blocking=True)
        if self._stream is not None:
            self._stream.synchronize()
        return self._host["score"][:n].numpy().copy(), self._host["amap"][:n].numpy().copy()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._graphs.clear()
        self._context = None
        self._engine = None
        self._buffers.clear()
