"""The line: capture -> inspect -> sinks, until the source ends or SIGINT/SIGTERM.

The loop never blocks on the slow side (DESIGN.md decision 11): capture has its own thread and a
drop-oldest ring, each sink its own bounded queue. Frames waiting in the ring are batched up to
the engine's batch size. On a stop signal the capture stops, the frames already captured are
still inspected and delivered, every sink is flushed, and a summary is returned.

With part triggers (`triggers`, DESIGN.md decision 12) the loop inspects parts, not frames: each
trigger gets the first frame captured after it (frames in between are counted, not inspected),
and every trigger gets exactly one record: inspected, or a fail-safe NOK with its reason when no
frame came within the timeout, the trigger queue was full, or the line ended first.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from edgefreq.errors import UserError
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.frame import Frame
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.record import LATENCY_STAGES, Inspection
from edgefreq.runtime.sources import EndOfStream
from edgefreq.runtime.trigger import Trigger, Triggers, missed_part


class LatencyHistogram:
    """Fixed-memory latency percentiles for runs of any length: log-spaced bins from 1 us to 100 s,
    each 0.5 % wide, so a percentile is within 0.5 % of the exact value."""

    EDGES = np.geomspace(1e-3, 1e5, int(np.log(1e8) / np.log(1.005)) + 1)  # milliseconds

    def __init__(self) -> None:
        self.counts = np.zeros(len(self.EDGES) + 1, np.int64)
        self.n = 0

    def add(self, ms: float) -> None:
        self.counts[np.searchsorted(self.EDGES, ms)] += 1
        self.n += 1

    def percentile(self, q: float) -> float:
        if self.n == 0:
            return 0.0
        k = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.n))
        lo = self.EDGES[k - 1] if k > 0 else 0.0
        hi = self.EDGES[min(k, len(self.EDGES) - 1)]
        return float(np.sqrt(lo * hi)) if lo > 0 else float(hi)


@dataclass
class Summary:
    frames: int = 0
    ok: int = 0
    nok: int = 0
    not_inspected: int = 0
    dropped: int = 0
    lost: int = 0  # frames the source lost before capture (GenICam incomplete buffers, frame-id gaps)
    captured: int = 0
    seconds: float = 0.0
    latency_ms: dict[str, LatencyHistogram] = field(default_factory=lambda: {s: LatencyHistogram() for s in LATENCY_STAGES})
    confusion: dict[str, int] = field(default_factory=lambda: {"tp": 0, "fp": 0, "tn": 0, "fn": 0})
    sinks: dict[str, dict[str, int]] = field(default_factory=dict)
    source_error: str | None = None  # why a source ended early, if it did
    triggers: dict[str, int] | None = None  # part mode: fired, matched, timed_out, overflow, waiting
    between_parts: int = 0  # part mode: frames captured while no part waited (not inspected)

    def add(self, inspection: Inspection) -> None:
        d = inspection.decision
        self.frames += 1
        self.ok += d.verdict == "OK"
        self.nok += d.verdict == "NOK"
        self.not_inspected += inspection.error is not None
        for stage in LATENCY_STAGES:
            self.latency_ms[stage].add(d.latency_ms[stage])
        if d.truth is not None:
            key = ("t" if (d.verdict == "NOK") == bool(d.truth) else "f") + ("p" if d.verdict == "NOK" else "n")
            self.confusion[key] += 1

    def percentiles(self) -> dict[str, dict[str, float]]:
        return {s: {"p50": h.percentile(50), "p99": h.percentile(99)} for s, h in self.latency_ms.items()}

    def to_dict(self) -> dict:
        return {
            "frames": self.frames, "ok": self.ok, "nok": self.nok, "not_inspected": self.not_inspected,
            "captured": self.captured, "dropped": self.dropped, "lost": self.lost, "seconds": round(self.seconds, 3),
            "fps": round(self.frames / self.seconds, 2) if self.seconds else 0.0,
            "latency_ms": self.percentiles(), "confusion": self.confusion if any(self.confusion.values()) else None,
            "sinks": self.sinks, "source_error": self.source_error,
            "triggers": self.triggers, "between_parts": self.between_parts,
        }

    def text(self) -> str:
        p = self.percentiles()
        lines = [
            f"{self.frames} frames in {self.seconds:.1f} s ({self.frames / self.seconds if self.seconds else 0:.1f} fps): "
            f"{self.ok} OK, {self.nok} NOK ({self.not_inspected} of them not inspected); "
            f"captured {self.captured}, dropped {self.dropped}" + (f", lost by the source {self.lost}" if self.lost else ""),
            "latency ms p50/p99: " + "  ".join(f"{s} {p[s]['p50']:.2f}/{p[s]['p99']:.2f}" for s in LATENCY_STAGES),
        ]
        if any(self.confusion.values()):
            c = self.confusion
            lines.append(f"against ground truth: {c['tp']} defects caught, {c['fn']} escaped, {c['fp']} good parts rejected, {c['tn']} passed")
        if self.triggers is not None:
            t = self.triggers
            lines.append(f"parts: {t['fired']} triggers, {t['matched']} inspected with a frame captured after them, "
                         f"{t['timed_out']} without a frame in time and {t['overflow']} over the trigger queue (both NOK); "
                         f"{self.between_parts} frames between parts")
        for name, s in self.sinks.items():
            shed = f" ({s['images_dropped']} without their images)" if s.get("images_dropped") else ""
            lines.append(f"sink {name}: sent {s.get('sent', 0)}{shed}, dropped {s.get('dropped', 0)}, failed {s.get('failed', 0)}, unsent {s.get('unsent', 0)}")
        if self.source_error:
            lines.append(f"the source failed: {self.source_error}")
        return "\n".join(lines)


class StopSignals:
    """SIGINT/SIGTERM set an event instead of raising, while the loop runs (main thread only)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, object] = {}

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self.event

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def run_line(
    capture: Capture,
    inspector: Inspector,
    sinks: list,
    stop: threading.Event,
    max_batch: int = 1,
    on_inspection: Callable[[Inspection], None] | None = None,
    sink_timeout: float = 5.0,
    triggers: Triggers | None = None,
) -> Summary:
    """Inspect every frame the capture delivers (or, with `triggers`, every part) until it ends
    or `stop` is set; flush the sinks."""
    summary = Summary()
    start = time.perf_counter()

    def deliver(inspection: Inspection) -> None:
        if inspection.error is not None and inspection.decision.reason is None:
            inspection.decision = replace(inspection.decision, reason=inspection.error)
        for sink in sinks:
            sink.submit(inspection.decision, inspection.view, inspection.amap)
        summary.add(inspection)
        if on_inspection is not None:
            on_inspection(inspection)

    def handle(batch) -> None:
        stats = capture.stats()  # a record's `dropped`: every frame without a record so far
        for inspection in inspector.inspect(batch, stats.dropped + stats.lost):
            deliver(inspection)

    try:
        if triggers is not None:
            _inspect_parts(capture, inspector, triggers, deliver, stop, summary)
        else:
            for batch in _batches(capture, stop, summary, max_batch, lambda: 0.1):
                if batch:
                    handle(batch)
    finally:
        capture.stop()
        summary.seconds = time.perf_counter() - start
        stats = capture.stats()
        summary.captured, summary.dropped, summary.lost = stats.captured, stats.dropped, stats.lost
        if triggers is not None:
            triggers.close()
            summary.triggers = triggers.stats()
        for sink in sinks:
            if summary.source_error and hasattr(sink, "source_failed"):  # OPC UA: the VisionSystem goes to Error
                sink.source_failed(summary.source_error)
            summary.sinks[sink.name] = sink.close(sink_timeout)
    return summary


def _inspect_parts(capture: Capture, inspector: Inspector, triggers: Triggers, deliver, stop: threading.Event, summary: Summary) -> None:
    """Part mode of run_line: match frames to triggers until the source ends or `stop`."""
    triggers.attach(capture.mark)

    def dropped() -> int:
        stats = capture.stats()
        return stats.dropped + stats.lost

    def answer_missed() -> None:
        for trigger in triggers.overflowed():
            deliver(missed_part(trigger, f"trigger queue full ({triggers.capacity} parts were waiting for a frame)",
                                inspector, capture.source.uri, dropped()))
        for trigger in triggers.expired():
            deliver(missed_part(trigger, f"no frame within {triggers.timeout_s:g} s of the trigger",
                                inspector, capture.source.uri, dropped()))

    def inspect(frame) -> None:
        trigger = triggers.match(frame.frame_id)
        if trigger is None:  # read before the oldest waiting part arrived, or no part waits
            summary.between_parts += 1
            return
        for inspection in inspector.inspect([frame], dropped()):
            deliver(_as_part(inspection, trigger))

    def wait() -> float:  # wake up for the next trigger's deadline
        deadline = triggers.next_deadline()
        return 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))

    answer_missed()
    for batch in _batches(capture, stop, summary, 1, wait):
        for frame in batch:
            inspect(frame)
        answer_missed()
    triggers.close()  # from here a trigger is refused: nothing would answer it
    answer_missed()
    why = "the source failed" if summary.source_error else "the line stopped" if stop.is_set() else "the source ended"
    for trigger in triggers.drain():
        deliver(missed_part(trigger, f"{why} before a frame came", inspector, capture.source.uri, dropped()))


def _batches(capture: Capture, stop: threading.Event, summary: Summary, size: int, wait: Callable[[], float]) -> Iterator[list[Frame]]:
    """The one frame-reading loop of run_line: lists of up to `size` frames as the capture delivers
    them ([] when `wait()` seconds passed without one) until the source ends, fails (its error in
    `summary.source_error`; what was captured before it is decided) or `stop` is set; after a
    stop, the frames already captured are finished, not thrown away."""
    stopped = False
    while True:
        if stop.is_set() and not stopped:
            capture.stop()
            stopped = True
        batch: list[Frame] = []
        try:
            while len(batch) < size and (frame := capture.get(timeout=0 if batch or stopped else wait())) is not None:
                batch.append(frame)
        except EndOfStream:
            yield batch
            return
        except UserError as exc:  # a finite source broke; get raises it after every frame before it
            summary.source_error = str(exc)
            yield batch
            return
        if stopped and not batch:  # nothing left (or a capture thread left blocked in a driver)
            return
        yield batch


def _as_part(inspection: Inspection, trigger: Trigger) -> Inspection:
    """The inspection of a triggered part: its id, trigger time and trigger -> verdict latency."""
    d = inspection.decision
    latency = {**d.latency_ms, "trigger": max(0.0, (d.decided_ts - trigger.ts) * 1000.0)}
    inspection.decision = replace(d, part_id=trigger.part_id, trigger_ts=trigger.ts, latency_ms=latency)
    return inspection
