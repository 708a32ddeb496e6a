"""Frames in, decisions out: preprocess + FD, the engine, and the decision against the sidecar.

One `Inspector` per engine. `inspect(frames)` handles a batch of frames of one size in one
FD call and one engine call; every frame gets exactly one Decision. A frame that cannot be
inspected (wrong size for the ROI, corrupt, an engine that raised on it) gets a fail-safe NOK
decision with no score, and the reason is kept in `Inspection.error`, so the line rejects a part
it could not check and goes on with the next one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace

import numpy as np
import torch

from edgefreq.calibration import is_nok
from edgefreq.errors import UserError
from edgefreq.kernels import frame_to_bands, registered, without_registration
from edgefreq.runtime.frame import Frame
from edgefreq.runtime.record import Decision, Inspection

log = logging.getLogger("edgefreq")


def fd_stage(frames: np.ndarray, spec, device: torch.device, fd_impl: str = "auto") -> list:
    """The FD stage of the line: B x H x W x C uint8 frames -> bands where the engine wants them:
    on CUDA through pinned memory and the fused Triton kernel (torch tensors), else OpenCV (numpy)."""
    if device.type == "cuda":
        batch = torch.from_numpy(frames).pin_memory().to(device, non_blocking=True)
        return frame_to_bands(batch, spec, impl=fd_impl)
    return [b.numpy() for b in frame_to_bands(frames, spec, impl="opencv" if fd_impl == "auto" else fd_impl)]


def as_batch(images: list[np.ndarray]) -> np.ndarray:
    """Frames of one shape (H x W gray or H x W x C) as one B x H x W x C batch: the only batch layout
    the runtime hands to FD, so a stack of gray frames is never mistaken for one colour frame."""
    return np.stack([image[:, :, None] if image.ndim == 2 else image for image in images])


class Inspector:
    """Turns frames into decisions with one backend (DESIGN.md decision 8) and its sidecar."""

    def __init__(
        self, backend, fd_impl: str = "auto", roi: tuple[int, int, int, int] | None = None, threshold: float | None = None
    ) -> None:
        """`threshold` overrides the calibrated one on purpose (`edgefreq run --threshold X`); every
        decision then says so (threshold_source "override")."""
        if backend.calibration is None:
            raise UserError(
                f"{backend.engine_id}: the engine has no calibration: run `edgefreq calibrate` on its run, then export again"
            )
        self.backend = backend
        self.spec = backend.preprocess if roi is None else replace(backend.preprocess, roi=tuple(roi))
        self.fd_spec = without_registration(self.spec)  # frames are registered once, on the CPU, before FD
        self.calibration = backend.calibration
        self.threshold = float(self.calibration.threshold if threshold is None else threshold)
        self.threshold_source = "calibration" if threshold is None else "override"
        if not math.isfinite(self.threshold):
            raise UserError(f"--threshold must be a finite number, got {threshold}")
        if threshold is not None:
            log.warning("threshold %.6g overrides the calibrated %.6g (%s): every decision records it",
                        self.threshold, self.calibration.threshold, self.calibration.policy.describe())
        self.engine = backend.engine_id
        self.device = torch.device(backend.device)
        self.fd_impl = fd_impl

    def _bands(self, images: list[np.ndarray]) -> list:
        return fd_stage(as_batch(images), self.fd_spec, self.device, self.fd_impl)

    def inspect(self, frames: list[Frame], dropped: int) -> list[Inspection]:
        """Decisions for `frames` (in order). Frames of different sizes are inspected in groups."""
        out: list[Inspection] = []
        start = 0
        while start < len(frames):
            if frames[start].error is not None:  # a part whose image could not be read
                out.append(self._failed(frames[start], frames[start].error, dropped, time.time()))
                start += 1
                continue
            end = start + 1
            while end < len(frames) and frames[end].error is None and frames[end].image.shape == frames[start].image.shape:
                end += 1
            out.extend(self._inspect_group(frames[start:end], dropped))
            start = end
        return out

    def _inspect_group(self, frames: list[Frame], dropped: int) -> list[Inspection]:
        t0 = time.perf_counter()
        wall0 = time.time()
        try:  # registration (preprocess.register) moves the part into the reference pose; the map and view are in it
            images = [registered(f.image, self.spec) for f in frames]
            bands = self._bands(images)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t1 = time.perf_counter()
            scores, maps = self.backend.infer(bands)
        except Exception as exc:  # a frame the engine cannot take, or an engine failing on it: never the end of the line
            if len(frames) > 1:  # find the frame that is at fault, inspect the rest
                return [i for f in frames for i in self._inspect_group([f], dropped)]
            return [self._failed(frames[0], self._reason(exc), dropped, wall0)]
        t2 = time.perf_counter()
        out = []
        for k, frame in enumerate(frames):
            score = float(scores[k])
            nok = is_nok(score, self.threshold)
            t3 = time.perf_counter()
            latency = {
                "capture": max(0.0, (wall0 - frame.timestamp) * 1000.0),
                "preprocess": (t1 - t0) * 1000.0,
                "infer": (t2 - t1) * 1000.0,
                "decide": (t3 - t2) * 1000.0,
            }
            latency["total"] = sum(latency.values())
            decision = Decision(
                frame_id=frame.frame_id,
                capture_ts=frame.timestamp,
                decided_ts=time.time(),
                source=frame.source,
                score=score,
                score_norm=self.calibration.normalize(score),
                threshold=self.threshold,
                verdict="NOK" if nok else "OK",
                latency_ms=latency,
                dropped=dropped,
                engine=self.engine,
                truth=frame.truth,
                threshold_source=self.threshold_source,
            )
            out.append(Inspection(decision, frame, maps[k], self._view(images[k])))
        return out

    def _reason(self, exc: Exception) -> str:
        """Why a frame was not inspected, in one line."""
        if isinstance(exc, UserError):
            return str(exc)
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"the {self.backend.name} engine failed on it: {type(exc).__name__}: {first}"

    def _failed(self, frame: Frame, reason: str, dropped: int, wall0: float) -> Inspection:
        log.warning("frame %d from %s not inspected (NOK): %s", frame.frame_id, frame.source, reason)
        latency = {"capture": max(0.0, (wall0 - frame.timestamp) * 1000.0), "preprocess": 0.0, "infer": 0.0, "decide": 0.0}
        latency["total"] = latency["capture"]
        decision = Decision(
            frame_id=frame.frame_id, capture_ts=frame.timestamp, decided_ts=time.time(), source=frame.source,
            score=math.nan, score_norm=math.nan, threshold=self.threshold, verdict="NOK", latency_ms=latency,
            dropped=dropped, engine=self.engine, truth=frame.truth, threshold_source=self.threshold_source,
        )
        return Inspection(decision, frame, None, frame.image, reason)  # image None when it could not be read

    def _view(self, image: np.ndarray) -> np.ndarray:
        if self.spec.roi is None:
            return image
        x, y, w, h = self.spec.roi
        return image[y : y + h, x : x + w]
