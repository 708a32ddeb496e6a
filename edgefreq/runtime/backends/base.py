"""The one interface every inference backend shares (DESIGN.md decision 8).

    backend = open_backend("bottle.onnx")          # or .plan, .pt2, a run folder
    score, amap = backend.infer(bands)             # bands: levels x (N x C x H x W), numpy or torch
    backend.preprocess, backend.calibration        # what to feed it, how to decide on its scores
    backend.close()

`infer` checks the bands against the engine's preprocessing spec (count, C x H x W, one N) and
splits a batch larger than the engine's maximum into chunks; each backend only implements
`_infer` on one chunk. Scores come back as float32 numpy arrays: score N, amap N x H x W.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from edgefreq.calibration import Calibration
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess

Band = np.ndarray | torch.Tensor


def check_engine_io(
    where: str,
    inputs: Sequence[tuple[str, Sequence[Any]]],
    outputs: Sequence[tuple[str, Sequence[Any]]],
    spec: Preprocess,
    sidecar_inputs: Sequence[str],
    sidecar_outputs: Sequence[str],
    remake: str,
) -> None:
    """Refuse, in one line, an engine whose inputs / outputs are not what its sidecar says.

    `inputs` and `outputs` are the engine's own (name, shape) lists, shapes with ints where fixed and
    anything else (None, a name) where dynamic. Expected: the sidecar's band inputs, in order, each
    N x channels x height x width; outputs `score` (N) and `amap` (N x height x width), and the
    sidecar listing them in that order (the order the backends read them in).
    """
    def fixed(shape: Sequence[Any]) -> tuple:
        return tuple(d if isinstance(d, int) and d > 0 else "N" for d in shape)

    band = ("N", spec.channels, *spec.size)
    want_in = [(name, band) for name in sidecar_inputs]
    got_in = [(name, fixed(shape)) for name, shape in inputs]
    ok_in = [n for n, _ in got_in] == [n for n, _ in want_in] and all(
        len(g) == 4 and all(a == b for a, b in zip(g[1:], w[1:])) for (_, g), (_, w) in zip(got_in, want_in)
    )
    got_out = {name: fixed(shape) for name, shape in outputs}
    want_out = {"score": ("N",), "amap": ("N", *spec.size)}
    ok_out = tuple(sidecar_outputs) == tuple(want_out) and set(got_out) == set(want_out) and all(
        len(got_out[n]) == len(w) and all(a == b for a, b in zip(got_out[n][1:], w[1:])) for n, w in want_out.items()
    )
    if not (ok_in and ok_out):
        def show(pairs) -> str:
            return ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in pairs)

        raise UserError(
            f"{where} does not match its sidecar: the engine takes {show(got_in)} and returns {show(got_out.items())}, "
            f"the sidecar says {show(want_in)} -> {', '.join(sidecar_outputs)} ({spec.levels} FD levels, "
            f"{spec.channels} channel(s), {spec.size[0]}x{spec.size[1]}): keep each engine with its own .yaml, or {remake}"
        )


def as_numpy(band: Band) -> np.ndarray:
    """A band as a contiguous float32 numpy array (copied from the GPU when it lives there)."""
    if isinstance(band, torch.Tensor):
        band = band.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(band, dtype=np.float32)


class Backend(abc.ABC):
    """An engine that maps FD bands to (score N, amap N x H x W)."""

    name: str = ""  # onnxruntime | tensorrt | inductor | torch

    def __init__(
        self,
        preprocess: Preprocess,
        calibration: Calibration | None,
        model: str,
        engine_id: str,
        device: str,
        max_batch: int | None,
    ) -> None:
        self.preprocess = preprocess
        self.calibration = calibration
        self.model = model  # model kind
        self.engine_id = engine_id  # NAME@HASH (record.engine_id): names the engine in every decision record
        self.device = device  # "cpu" or "cuda:N"
        self.max_batch = max_batch  # None: any batch size

    def __repr__(self) -> str:
        return f"<{self.name} backend {self.engine_id} on {self.device}>"

    def check(self, bands: Sequence[Band]) -> int:
        """The batch size of `bands`, or a UserError saying how they differ from what the engine takes."""
        spec = self.preprocess
        want = (spec.channels, *spec.size)
        if not isinstance(bands, (list, tuple)) or len(bands) != spec.levels:
            got = len(bands) if isinstance(bands, (list, tuple)) else type(bands).__name__
            raise UserError(f"{self.engine_id} takes a list of {spec.levels} band arrays (FD levels), got {got}")
        shapes = [tuple(b.shape) for b in bands]
        if any(len(s) != 4 or s[1:] != want or s[0] != shapes[0][0] for s in shapes) or shapes[0][0] < 1:
            raise UserError(f"{self.engine_id} takes bands of N x {want[0]} x {want[1]} x {want[2]} (one N), got {shapes}")
        return shapes[0][0]

    def infer(self, bands: Sequence[Band]) -> tuple[np.ndarray, np.ndarray]:
        """(score N, amap N x H x W) for N images' bands, in chunks of at most max_batch."""
        n = self.check(bands)
        step = n if self.max_batch is None else self.max_batch
        if step >= n:
            return self._infer(list(bands))
        parts = [self._infer([b[i : i + step] for b in bands]) for i in range(0, n, step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    @abc.abstractmethod
    def _infer(self, bands: list[Band]) -> tuple[np.ndarray, np.ndarray]:
        """One chunk (N <= max_batch), checked."""

    def close(self) -> None:
        """Release the engine (sessions, device buffers); the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
