"""Part triggers: "part 4711 is under the camera" from a PLC (Modbus, OPC UA) or HTTP.

`edgefreq run --trigger modbus|opcua|http` makes the loop inspect parts instead of frames
(DESIGN.md decision 12). Whatever carries it, a trigger goes through one `Triggers` queue:

    triggers = Triggers(capacity=16, timeout_s=2.0)
    triggers.attach(capture.mark)        # the loop does this: frame ids at trigger time
    triggers.fire("4711", via="modbus")  # any thread: the Modbus server, the OPC UA method, HTTP

- `fire` stamps the trigger with the wall time and `first_frame`, the id of the first frame whose
  read starts after this instant (`Capture.mark()`): the loop inspects the first frame with an id
  at least that, never an older buffered one. Then it calls the `on_fire` hooks (a GenICam
  camera's software trigger, so the frame is exposed after the part arrived).
- At most `capacity` triggers wait for their frame. One more is not lost: it is kept in the
  overflow list, answered by the loop with a fail-safe NOK record ("trigger queue full") and
  counted (`overflow`).
- A trigger that finds no frame within `timeout_s` is answered with a fail-safe NOK record
  ("no frame within ... s"), counted (`timed_out`).
- Once the line ends (`close()`), `fire` raises RuntimeError: nothing would answer the part.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgefreq.errors import UserError
from edgefreq.runtime.frame import Frame
from edgefreq.runtime.record import Inspection
from edgefreq.runtime.record import Decision

log = logging.getLogger("edgefreq")

TRIGGER_MODES = ("free", "modbus", "http", "opcua")
PART_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # OPC 40100 PartId is a string; it also names files (nokdir)


@dataclass(frozen=True)
class Trigger:
    """One part announced: its id, when, through what, and the first frame that may show it."""

    part_id: str
    ts: float  # time.time() at the trigger
    mono: float  # time.monotonic() at the trigger: deadlines
    first_frame: int
    via: str
    meas_id: str | None = None  # OPC UA StartSingleJob's MeasId, echoed in its result


def check_part_id(part_id: object) -> str:
    """A part id as the record keeps it: 1-64 of A-Z a-z 0-9 . _ : -. A bad one is a ValueError."""
    text = str(part_id)
    if not PART_ID.fullmatch(text):
        raise ValueError(f"a part id is 1 to 64 characters A-Z, a-z, 0-9, '.', '_', ':' or '-', got {text!r}")
    return text


class Triggers:
    """The queue of parts waiting for a frame; see the module docstring. Thread-safe."""

    def __init__(self, mode: str, capacity: int = 16, timeout_s: float = 2.0) -> None:
        if mode not in TRIGGER_MODES[1:]:
            raise UserError(f"--trigger {mode!r}: use one of {', '.join(TRIGGER_MODES)}")
        if capacity < 1:
            raise UserError(f"--trigger-queue must be at least 1, got {capacity}")
        if not timeout_s > 0:
            raise UserError(f"--trigger-timeout must be above 0 s, got {timeout_s}")
        self.mode, self.capacity, self.timeout_s = mode, capacity, timeout_s
        self._lock = threading.Lock()
        self._pending: collections.deque[Trigger] = collections.deque()
        self._overflowed: collections.deque[Trigger] = collections.deque()
        self._mark: Callable[[bool], int] = lambda in_flight: 0
        self.in_flight = True  # False: the camera exposes only on a trigger sent after the mark (software trigger)
        self._closed = False
        self.on_fire: list[Callable[[Trigger], None]] = []
        self.counts = {"fired": 0, "matched": 0, "timed_out": 0, "overflow": 0}

    def attach(self, mark: Callable[[bool], int]) -> None:
        """`mark(in_flight)` -> the id of the first frame read after the call (Capture.mark)."""
        self._mark = mark

    def fire(self, part_id: object, via: str, meas_id: str | None = None) -> Trigger:
        """Announce a part (any thread, never blocks for long). A bad part id is a ValueError."""
        part = check_part_id(part_id)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the line is stopping: part {part} was refused")
            trigger = Trigger(part, time.time(), time.monotonic(), self._mark(self.in_flight), via, meas_id)
            self.counts["fired"] += 1
            if len(self._pending) < self.capacity:
                self._pending.append(trigger)
            else:
                self._overflowed.append(trigger)
                self.counts["overflow"] += 1
        for hook in self.on_fire:
            try:
                hook(trigger)
            except Exception as exc:  # the part then times out: a fail-safe NOK
                log.warning("part %s: %s", part, exc)
        return trigger

    def match(self, frame_id: int) -> Trigger | None:
        """The oldest waiting trigger if frame `frame_id` was read after it (it is then taken), else None."""
        with self._lock:
            if self._pending and self._pending[0].first_frame <= frame_id:
                self.counts["matched"] += 1
                return self._pending.popleft()
        return None

    def expired(self, now: float | None = None) -> list[Trigger]:
        """Waiting triggers older than the timeout (taken), oldest first."""
        now = time.monotonic() if now is None else now
        out = []
        with self._lock:
            while self._pending and now - self._pending[0].mono >= self.timeout_s:
                out.append(self._pending.popleft())
            self.counts["timed_out"] += len(out)
        return out

    def overflowed(self) -> list[Trigger]:
        """Triggers that arrived while `capacity` were waiting (taken)."""
        with self._lock:
            out = list(self._overflowed)
            self._overflowed.clear()
        return out

    def drain(self) -> list[Trigger]:
        """Every trigger still waiting (taken): the line is ending."""
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out

    def close(self) -> None:
        """The line is ending: refuse triggers from now on."""
        with self._lock:
            self._closed = True

    def next_deadline(self) -> float | None:
        """time.monotonic() when the oldest waiting trigger times out, or None."""
        with self._lock:
            return self._pending[0].mono + self.timeout_s if self._pending else None

    def waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self.counts, "waiting": len(self._pending)}


def missed_part(trigger: Trigger, reason: str, inspector, source: str, dropped: int) -> Inspection:
    """The fail-safe NOK of a part no frame was inspected for: no frame (frame_id null), no score,
    `capture_ts` the trigger time, `reason` why. Its Inspection's frame is an empty stand-in (id -1)."""
    now = time.time()
    waited = max(0.0, (now - trigger.ts) * 1000.0)
    latency = {"capture": 0.0, "preprocess": 0.0, "infer": 0.0, "decide": 0.0, "total": 0.0, "trigger": waited}
    log.warning("part %s (%s trigger) NOK, not inspected: %s", trigger.part_id, trigger.via, reason)
    decision = Decision(
        frame_id=None, capture_ts=trigger.ts, decided_ts=now, source=source, score=math.nan, score_norm=math.nan,
        threshold=inspector.threshold, verdict="NOK", latency_ms=latency, dropped=dropped, engine=inspector.engine,
        threshold_source=inspector.threshold_source, part_id=trigger.part_id, trigger_ts=trigger.ts, reason=reason,
    )
    frame = Frame(-1, trigger.ts, None, source, error=reason)
    return Inspection(decision, frame, None, None, reason)


def take_triggers(triggers: Triggers, sink_uris: list[str], service) -> None:
    """Before anything opens: what will carry the part triggers (the web server for http, else a sink)."""
    if triggers.mode == "http":
        service.take_triggers(triggers)
    elif not any(uri.strip().lower().startswith(f"{triggers.mode}://") for uri in sink_uris):
        raise UserError(f"--trigger {triggers.mode} needs a --sink {triggers.mode}://HOST:PORT: the PLC sends its part triggers to that server")


def connect_triggers(triggers: Triggers, sinks: list, service, source) -> None:
    """Give the part triggers to what carries them (the Modbus or OPC UA server, the web server);
    every PLC sink answers per part (serve_parts); a software-triggered GenICam camera exposes one
    frame per part trigger."""
    carriers = []
    for sink in sinks:
        if hasattr(sink, "serve_parts"):
            carry = sink.trigger_mode == triggers.mode and not carriers
            sink.serve_parts(triggers, carry)
            carriers += [sink] if carry else []
    settings = getattr(source, "settings", None)
    if getattr(settings, "trigger", "free") == "software":
        triggers.on_fire.append(lambda _trigger: source.software_trigger())
        triggers.in_flight = False  # the camera exposes on the trigger: the read waiting now is the part's
