"""What the operator's view reads: a snapshot of the line, updated by the loop after each decision.

`LineState.observe(inspection)` runs on the line's thread (run_line's `on_inspection`): it updates
counters, histogram buckets and a window of recent latencies, keeps a reference to the latest
inspection and to recent NOK parts, and returns; it never copies an image, encodes, or waits on
anything but one lock that readers hold only while they copy a few numbers and references. The
arrays it keeps are the loop's own: every frame is a fresh array from the source and every map a
copy out of the engine, and neither is written again after the decision.

Readers (the web page, /metrics, /readyz, the systemd watchdog) call `snapshot()`, which copies
the numbers under the lock; images are encoded by the reader, on its own thread, from the
references it got.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgefreq.runtime.record import LATENCY_STAGES

# Prometheus histogram buckets: latency in seconds, the score normalized by the calibrated range
# (1.0 is the calibrated threshold).
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
SCORE_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
LATENCY_WINDOW = 1000  # decisions the page's p50/p99 are computed over (the recent line, not the whole run)


class Buckets:
    """Cumulative-histogram counts for Prometheus: one count per upper bound (+Inf last) and the sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = np.asarray(bounds, np.float64)
        self.counts = np.zeros(len(bounds) + 1, np.int64)
        self.sum = 0.0

    def add(self, value: float) -> None:
        self.counts[np.searchsorted(self.bounds, value, side="left")] += 1  # le: value <= bound
        self.sum += value

    def copy(self) -> tuple[list[tuple[str, int]], float]:
        cumulative = np.cumsum(self.counts)
        labels = [*(f"{b:g}" for b in self.bounds), "+Inf"]
        return list(zip(labels, (int(c) for c in cumulative))), float(self.sum)


@dataclass(frozen=True)
class Part:
    """A NOK part kept for the gallery: its record and the arrays to show and to file as feedback.
    `id` is the decision's number in this run (a triggered part no frame came for has no frame id)."""

    id: int
    inspection: object  # edgefreq.runtime.record.Inspection
    record: dict
    kept_at: float

    @property
    def nbytes(self) -> int:
        i = self.inspection
        image = i.frame.image
        return (image.nbytes if image is not None else 0) + (i.amap.nbytes if i.amap is not None else 0)


@dataclass(frozen=True)
class Snapshot:
    """The line at one instant, as plain numbers (safe to read on any thread)."""

    frames: int
    ok: int
    nok: int
    not_inspected: int
    latency_window_ms: dict[str, np.ndarray]
    latency_buckets: dict[str, tuple[list[tuple[str, int]], float]]
    score_buckets: tuple[list[tuple[str, int]], float]
    last_decision: int  # the latest decision's number in this run (0: none yet)
    last_frame_id: int | None
    last_verdict: str | None
    last_decision_age_s: float | None
    started_at: float

    def percentiles(self, stage: str = "total") -> dict[str, float | None]:
        values = self.latency_window_ms[stage]
        if not len(values):
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(values, [50, 99])
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}

    @property
    def yield_(self) -> float | None:
        """OK parts over all decided parts (not-inspected parts count as NOK)."""
        return self.ok / self.frames if self.frames else None


class LineState:
    """The loop's observer and the readers' snapshot; see the module docstring."""

    def __init__(self, gallery: int = 24, gallery_mb: float = 256.0) -> None:
        if gallery < 1 or gallery_mb <= 0:
            raise ValueError("gallery must keep at least one part in a positive number of MB")
        self._lock = threading.Lock()
        self._gallery_max, self._gallery_bytes_max = gallery, gallery_mb * 1e6
        self._gallery: deque[Part] = deque()
        self._gallery_bytes = 0
        self._latest = None
        self._latest_at: float | None = None
        self.frames = self.ok = self.nok = self.not_inspected = 0
        self._window = {s: deque(maxlen=LATENCY_WINDOW) for s in LATENCY_STAGES}
        self._latency = {s: Buckets(LATENCY_BUCKETS_S) for s in LATENCY_STAGES}
        self._score = Buckets(SCORE_BUCKETS)
        self.started_at = time.time()

    def observe(self, inspection) -> None:
        """Called by the loop after each decision (on its thread): cheap, never blocks for long."""
        d = inspection.decision
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self.ok += d.verdict == "OK"
            self.nok += d.verdict == "NOK"
            self.not_inspected += inspection.error is not None
            for stage in LATENCY_STAGES:
                ms = float(d.latency_ms[stage])
                self._window[stage].append(ms)
                self._latency[stage].add(ms / 1000.0)
            if math.isfinite(d.score_norm):
                self._score.add(float(d.score_norm))
            self._latest, self._latest_at = inspection, now
            if d.verdict == "NOK":
                self._keep(Part(self.frames, inspection, d.to_dict(), time.time()))

    def _keep(self, part: Part) -> None:
        """Newest NOK parts, at most `gallery` of them and `gallery_mb` of images (under the lock)."""
        self._gallery.append(part)
        self._gallery_bytes += part.nbytes
        while len(self._gallery) > 1 and (len(self._gallery) > self._gallery_max or self._gallery_bytes > self._gallery_bytes_max):
            self._gallery_bytes -= self._gallery.popleft().nbytes

    def latest(self):
        """(its number in this run, the latest Inspection), or (0, None) before the first decision."""
        with self._lock:
            return self.frames, self._latest

    def gallery(self) -> list[Part]:
        """The kept NOK parts, newest first."""
        with self._lock:
            return list(reversed(self._gallery))

    def part(self, part_id: int) -> Part | None:
        with self._lock:
            return next((p for p in self._gallery if p.id == part_id), None)

    def snapshot(self) -> Snapshot:
        with self._lock:
            latest, at = self._latest, self._latest_at
            windows = {s: np.fromiter(w, np.float64, len(w)) for s, w in self._window.items()}
            return Snapshot(
                frames=self.frames, ok=self.ok, nok=self.nok, not_inspected=self.not_inspected,
                latency_window_ms=windows,
                latency_buckets={s: b.copy() for s, b in self._latency.items()},
                score_buckets=self._score.copy(),
                last_decision=self.frames,
                last_frame_id=None if latest is None else latest.decision.frame_id,
                last_verdict=None if latest is None else latest.decision.verdict,
                last_decision_age_s=None if at is None else time.monotonic() - at,
                started_at=self.started_at,
            )
