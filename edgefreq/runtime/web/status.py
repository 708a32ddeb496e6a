"""The line's status as the page, /api/status, /readyz and /metrics report it.

`LineStatus` ties the loop's snapshot (LineState) to what else describes the line: the engine
and threshold (from the Inspector), the capture's counters (dropped, lost) and each sink's. It is
told when the engine is loaded (`attach`) and when the line has ended (`detach`).

Ready (`/readyz`) means: the engine is loaded, the source delivered a frame within `ready_within_s`
seconds, and no sink is failing: a sink is failing while its `failed` or `retries` counter has
grown within the last `ready_within_s` seconds (it retries with backoff of at most a few seconds,
so a sink that cannot deliver keeps growing one of them).
"""

from __future__ import annotations

import threading
import time

from edgefreq.runtime.web.state import LineState


class LineStatus:
    def __init__(self, state: LineState, ready_within_s: float = 10.0) -> None:
        self.state = state
        self.ready_within_s = ready_within_s
        self.inspector = None
        self.capture = None
        self.sinks: list = []
        self.source = ""
        self.ended = False
        self.http_clients_dropped = 0  # viewers disconnected for not reading (app.py)
        self._lock = threading.Lock()
        self._sink_seen: dict[str, tuple[int, float]] = {}  # sink -> (failed + retries, when it last grew)

    def attach(self, inspector, capture, sinks: list, source: str) -> None:
        """The engine is loaded and the line is starting."""
        self.inspector, self.capture, self.sinks, self.source = inspector, capture, list(sinks), source

    def detach(self) -> None:
        """The line has ended: not ready any more (the page shows the final counts)."""
        self.ended = True

    @property
    def vmax(self) -> float:
        """Where the heatmap turns red: the display:// window's scale (5x the threshold)."""
        return 5 * self.inspector.threshold if self.inspector is not None else 1.0

    def sink_stats(self) -> dict[str, dict]:
        """Each sink's counters plus `failing` (see the module docstring)."""
        now = time.monotonic()
        out = {}
        for sink in self.sinks:
            stats = sink.stats()
            trouble = stats["failed"] + stats["retries"]
            with self._lock:
                seen, since = self._sink_seen.get(sink.name, (0, -float("inf")))
                if trouble > seen:
                    since = now
                self._sink_seen[sink.name] = (trouble, since)
            out[sink.name] = {**stats, "failing": now - since < self.ready_within_s}
        return out

    def readiness(self, snap=None, sinks: dict | None = None) -> list[str]:
        """Why the line is not ready (empty: ready)."""
        snap = snap or self.state.snapshot()
        sinks = self.sink_stats() if sinks is None else sinks
        reasons = []
        if self.inspector is None:
            reasons.append("the engine is not loaded yet")
        if self.ended:
            reasons.append("the line has ended")
        if snap.last_decision_age_s is None:
            reasons.append("no frame decided yet")
        elif snap.last_decision_age_s > self.ready_within_s:
            reasons.append(f"no frame for {snap.last_decision_age_s:.0f} s (limit {self.ready_within_s:g} s)")
        reasons += [f"sink {name} is failing" for name, s in sinks.items() if s["failing"]]
        return reasons

    def status(self) -> dict:
        """Everything /api/status and the page show, as JSON data."""
        snap = self.state.snapshot()
        sinks = self.sink_stats()
        capture = self.capture.stats() if self.capture is not None else None
        i = self.inspector
        reasons = self.readiness(snap, sinks)
        return {
            "ready": not reasons,
            "not_ready": reasons,
            "engine": i.engine if i else None,
            "device": str(i.device) if i else None,
            "threshold": i.threshold if i else None,
            "threshold_source": i.threshold_source if i else None,
            "source": self.source,
            "uptime_s": round(time.time() - snap.started_at, 1),
            "frames": snap.frames,
            "ok": snap.ok,
            "nok": snap.nok,
            "not_inspected": snap.not_inspected,
            "yield": None if snap.yield_ is None else round(snap.yield_, 4),
            "captured": capture.captured if capture else 0,
            "dropped": capture.dropped if capture else 0,
            "lost": capture.lost if capture else 0,
            "latency_ms": {stage: snap.percentiles(stage) for stage in snap.latency_window_ms},
            "latency_window": len(snap.latency_window_ms["total"]),
            "last_frame_id": snap.last_frame_id,
            "last_verdict": snap.last_verdict,
            "last_decision_age_s": None if snap.last_decision_age_s is None else round(snap.last_decision_age_s, 3),
            "sinks": sinks,
        }
