"""Latency of the line, stage by stage: what `edgefreq bench` measures.

    backend = open_backend("bottle.onnx")
    report = run_bench(backend, open_source("synthetic://?size=1280x720", SourceOptions(loop=0)), [1, 8, 32], frames=300)
    print(report.table()); json.dumps(report.to_dict())

Every batch goes through `Inspector.inspect`, the code `edgefreq run` runs, so the figures are the
line's own: per batch, the source reads (capture), then one inspect call, whose stage split
(preprocess + FD, inference, decision) is the Inspector's own, the split every decision record
carries. Stages, in milliseconds per batch of B frames:

    capture            reading B frames from the source (decoding files, rendering the synthetic
                       line, a camera's read): in the line this runs in its own thread, so it is
                       reported but not part of the frame -> decision latency
    preprocess         ROI crop, registration (preprocess.register), resize, normalize and FD (kernels.frame_to_bands)
    infer              the engine (backend.infer: bands -> score, amap)
    decide             threshold and decision records, up to the batch's last frame
    frame_to_decision  the whole inspect call: the time from B frames in hand to their B
                       decisions, which is the latency every frame of the batch sees

`frame_to_decision` is timed around the inspect call with CUDA events on the current stream when
the backend runs on CUDA (`Timer`), with perf_counter on the CPU. The stage split inside comes from
the Inspector's host clock; it is honest on CUDA too, because every stage ends synchronized (the
Inspector synchronizes after FD, and the engine returns host arrays). Warm-up batches (first calls
allocate, compile, tune) are run and thrown away first. fps = frames / sum of frame_to_decision
(the rate the inspector sustains when frames are waiting); fps_with_capture also counts the
source reads, as one thread doing both would.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from edgefreq.errors import UserError
from edgefreq.runtime.backends import Backend
from edgefreq.runtime.capture import usable
from edgefreq.runtime.frame import Frame
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.sources import EndOfStream, Source

STAGES = ("capture", "preprocess", "infer", "decide", "frame_to_decision")
STAGE_LABELS = {
    "capture": "capture",
    "preprocess": "preprocess + FD",
    "infer": "inference",
    "decide": "decision",
    "frame_to_decision": "frame -> decision",
}
QUANTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))

T = TypeVar("T")


class Timer:
    """Times one call at a time on a device: CUDA events on a CUDA device, perf_counter on the CPU.

    `measure(fn)` returns (fn(), milliseconds). On CUDA the events are recorded on the current
    stream around the call and read after the end event completes, so work the call launched and
    did not wait for is counted too.
    """

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.name = "cuda events" if self.cuda else "perf_counter"

    def measure(self, fn: Callable[[], T]) -> tuple[T, float]:
        if not self.cuda:
            start = time.perf_counter()
            result = fn()
            return result, (time.perf_counter() - start) * 1000.0
        with torch.cuda.device(self.device):
            start_event = torch.cuda.Event(enable_timing=True)
            end_event = torch.cuda.Event(enable_timing=True)
            start_event.record()
            result = fn()
            end_event.record()
            end_event.synchronize()
        return result, float(start_event.elapsed_time(end_event))

    def samples(self, fn: Callable[[], object], reps: int, warmup: int) -> list[float]:
        """Milliseconds of `reps` calls of fn, after `warmup` untimed calls."""
        for _ in range(warmup):
            self.measure(fn)
        return [self.measure(fn)[1] for _ in range(reps)]


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 (linear interpolation), max and mean of `samples`; ordered p50 <= p90 <= p99 <= max."""
    if not samples:
        raise ValueError("no samples")
    values = np.asarray(samples, dtype=np.float64)
    out = {name: float(np.percentile(values, q)) for name, q in QUANTILES}
    out["max"] = float(values.max())
    out["mean"] = float(values.mean())
    return out


def parse_batches(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]: positive integers, each once, in the order given."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"--batches must be a comma-separated list of positive integers such as 1,8,32, got {text!r}") from None
    if any(v < 1 for v in values):
        raise UserError(f"--batches: every size must be at least 1, got {text!r}")
    if len(set(values)) != len(values):
        raise UserError(f"--batches lists a size twice: {text!r}")
    return values


def check_batches(batches: Sequence[int], backend: Backend) -> None:
    """Refuse batch sizes above the engine's maximum (a plan or pt2 package is built for a range)."""
    top = backend.max_batch
    if top is not None and max(batches) > top:
        raise UserError(
            f"{backend.engine_id} takes at most {top} frames per batch (its sidecar), --batches asks for {max(batches)}: "
            "rebuild it with a larger maximum (edgefreq build --batches MIN,OPT,MAX) or lower --batches"
        )


@dataclass
class BatchResult:
    """One batch size: per-batch samples of every stage (ms) and the frame rates they give."""

    batch: int
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    @property
    def batches(self) -> int:
        return len(self.samples["frame_to_decision"])

    @property
    def frames(self) -> int:
        return self.batches * self.batch

    def fps(self, with_capture: bool = False) -> float:
        seconds = sum(self.samples["frame_to_decision"]) + (sum(self.samples["capture"]) if with_capture else 0.0)
        return self.frames / (seconds / 1000.0) if seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "batches": self.batches,
            "frames": self.frames,
            "latency_ms": {s: percentiles(v) for s, v in self.samples.items()},
            "fps": self.fps(),
            "fps_with_capture": self.fps(with_capture=True),
        }


@dataclass
class BenchReport:
    engine: str
    backend: str
    device: str
    timer: str
    source: str
    frame_size: tuple[int, ...]  # of the first frame: H x W (x C)
    model_input: dict[str, Any]
    warmup_batches: int
    results: list[BatchResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "backend": self.backend,
            "device": self.device,
            "timer": self.timer,
            "unit": "milliseconds per batch",
            "source": self.source,
            "frame_size": list(self.frame_size),
            "model_input": self.model_input,
            "warmup_batches": self.warmup_batches,
            "host": {"python": platform.python_version(), "torch": str(torch.__version__), "machine": platform.machine(),
                     "torch_threads": torch.get_num_threads()},
            "runs": [r.to_dict() for r in self.results],
        }

    def table(self) -> str:
        size = "x".join(str(v) for v in self.frame_size[1::-1])
        inp = self.model_input
        lines = [
            f"{self.engine} on {self.backend} ({self.device}); frames {size} from {self.source} -> "
            f"{inp['size'][1]}x{inp['size'][0]} x {inp['levels']} bands; timer: {self.timer}; ms per batch",
            f"{'batch':>5} {'frames':>6}  {'stage':<18} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}",
        ]
        for r in self.results:
            stats = r.to_dict()["latency_ms"]
            for k, stage in enumerate(STAGES):
                head = f"{r.batch:>5} {r.frames:>6}" if k == 0 else " " * 12
                q = stats[stage]
                lines.append(f"{head}  {STAGE_LABELS[stage]:<18} " + " ".join(f"{q[n]:>9.3f}" for n in ("p50", "p90", "p99", "max")))
            lines.append(f"{'':>12}  {'fps':<18} {r.fps():>9.1f}  (with capture {r.fps(with_capture=True):.1f}; {r.batches} batches)")
        return "\n".join(lines)


def _read_batch(source: Source, batch: int, next_id: int, timeout: float = 5.0) -> list[Frame]:
    """B frames as Capture would hand them over (usable() applied); a live source may miss reads for `timeout` s."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < batch:
        try:
            item = source.read_sample()
        except EndOfStream:
            raise UserError(f"{source.uri} ran out of frames; benchmark a source whose frames all decode (files loop)") from None
        image = None if item is None else usable(item.image)
        if image is not None:
            frames.append(Frame(next_id + len(frames), time.time(), image, source.uri, item.truth))
        elif not source.is_live:
            raise UserError(f"{source.uri} gave a corrupt frame; benchmark a source whose frames all decode (files loop)")
        elif time.monotonic() > deadline:
            raise UserError(f"{source.uri} gave no usable frame for {timeout:g} s: check the camera or stream")
    return frames


def run_bench(
    backend: Backend,
    source: Source,
    batches: Sequence[int],
    frames: int,
    warmup: int,
    fd_impl: str = "auto",
    progress: bool = True,
) -> BenchReport:
    """Time `frames` frames (rounded up to whole batches) at every batch size, after `warmup`
    untimed batches each; see the module docstring for the stages."""
    if frames < 1 or warmup < 0 or not batches:
        raise UserError(f"--frames must be at least 1, --warmup at least 0 and --batches name a size, got {frames}, {warmup}, {list(batches)}")
    check_batches(batches, backend)
    inspector = Inspector(backend, fd_impl)
    timer = Timer(backend.device)
    spec = inspector.spec
    plan = [(b, math.ceil(frames / b)) for b in batches]
    report: BenchReport | None = None
    next_id = 0
    with tqdm(total=sum(warmup + n for _, n in plan), desc=f"bench {backend.engine_id.split('@')[0]}", unit="batch",
              disable=not progress, leave=False) as bar:
        for batch, count in plan:
            result = BatchResult(batch)
            bar.set_postfix_str(f"batch {batch}")
            for k in range(warmup + count):
                start = time.perf_counter()
                group = _read_batch(source, batch, next_id)
                capture_ms = (time.perf_counter() - start) * 1000.0
                next_id += batch
                inspections, span_ms = timer.measure(lambda: inspector.inspect(group, 0))
                failed = next((i for i in inspections if i.error is not None), None)
                if failed is not None:
                    raise UserError(f"frame {failed.frame.frame_id} from {source.uri} could not be inspected: {failed.error}")
                if report is None:
                    report = BenchReport(
                        engine=backend.engine_id, backend=backend.name, device=backend.device, timer=timer.name,
                        source=source.uri, frame_size=tuple(group[0].image.shape),
                        model_input={"size": list(spec.size), "channels": spec.channels, "levels": spec.levels,
                                     "roi": list(spec.roi) if spec.roi else None},
                        warmup_batches=warmup,
                    )
                if k >= warmup:
                    split = inspections[-1].decision.latency_ms
                    result.samples["capture"].append(capture_ms)
                    for stage in ("preprocess", "infer", "decide"):
                        result.samples[stage].append(split[stage])
                    result.samples["frame_to_decision"].append(span_ms)
                bar.update()
            report.results.append(result)
    return report
