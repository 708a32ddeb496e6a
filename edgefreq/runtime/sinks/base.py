"""What every sink shares: its own bounded queue and worker thread, retries with backoff, stats.

The camera loop calls `submit()`, which only appends to the sink's queue and returns: it never
waits on a network, a disk or a lock held during I/O. When the queue is full the OLDEST queued
decision is dropped (and counted): the newest decisions matter most to a line, and a PLC or
dashboard that catches up wants the present, not a backlog. The queue is capped in items
(`queue`) and, for sinks that keep images (nokdir), in bytes of images (`queue_mb`): a 4K frame
is 25 MB, so 256 of them would be gigabytes. Over the byte cap, the oldest queued decisions lose
their images (counted as `images_dropped`) but stay queued: the record of a NOK part is kept. The worker thread delivers items in
order; a failed delivery is retried with exponential backoff (`backoff_s`, doubling, capped at
`backoff_max_s`) up to `retries` more times, then counted as failed and the next item goes.

Counters (`stats()`): sent, dropped (queue overflow, or submitted after close), failed (gave up
after retries, or a permanent error), retries (extra attempts), images_dropped (images shed
over the byte cap; their decisions stay), queued (waiting now). Every
accepted item ends in exactly one of sent / dropped / failed, or is still queued or in flight.

`close(timeout)` waits for the queue to drain, then stops the worker; a delivery still running
then is let finish (up to `abort_grace_s`: one delivery's own time bound) rather than left behind:
a thread still inside native code (PNG encoding, a socket) when the interpreter exits can abort
the whole process (SIGABRT, "terminate called without an active exception").
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks.options import SinkOptions

log = logging.getLogger("edgefreq.sinks")


class PermanentError(Exception):
    """A delivery that retrying cannot fix (say HTTP 400): the item is counted as failed at once."""


@dataclass(frozen=True)
class Item:
    """One queued delivery: the decision and, for sinks that keep them, private copies of the images."""

    decision: Decision
    frame: np.ndarray | None = None
    amap: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frame, self.amap) if a is not None)


class Sink:
    """Base class: subclasses implement `_deliver(item)` and, where needed, `_accept` and `_release`.

    A subclass opens its resources in `__init__` (so a bad path or a busy port is a UserError
    there), then `open_sink` calls `start()`. Use `close(timeout)` (or `with`) to flush and stop.
    """

    def __init__(self, name: str, options: SinkOptions | None = None) -> None:
        self.name = name
        self.options = options or SinkOptions()
        self._queue: deque[Item] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._closing = False
        self._report: dict[str, int] | None = None
        self._inflight = 0
        self._healthy = True
        self._counts = {"sent": 0, "dropped": 0, "failed": 0, "retries": 0, "images_dropped": 0}
        self._thread = threading.Thread(target=self._run, name=f"sink {name}", daemon=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> Sink:
        """Start the worker thread; returns self."""
        self._thread.start()
        return self

    def submit(self, decision: Decision, frame: np.ndarray | None = None, amap: np.ndarray | None = None) -> None:
        """Queue `decision` (with the frame and anomaly map, for sinks that keep images) and return at once.

        Sinks that keep images copy them here, so the caller may reuse its buffers afterwards.
        """
        try:
            item = self._accept(decision, frame, amap)
        except Exception as exc:  # e.g. an image that cannot be copied: lose this item, never the line
            self._set_health(False, exc)
            with self._cond:
                self._counts["failed"] += 1
            return
        if item is None:
            return
        with self._cond:
            if self._closing:
                self._counts["dropped"] += 1
                return
            self._queue.append(item)
            self._queued_bytes += item.nbytes
            if len(self._queue) > self.options.queue:
                self._queued_bytes -= self._queue.popleft().nbytes
                self._counts["dropped"] += 1
            if self._queued_bytes > self.options.queue_mb * 1e6:
                self._shed_images()
            self._cond.notify()

    def _shed_images(self) -> None:
        """Over the byte cap: the oldest queued items keep their decision and lose their images (under the lock)."""
        max_bytes = self.options.queue_mb * 1e6
        for k, item in enumerate(self._queue):
            if self._queued_bytes <= max_bytes or k == len(self._queue) - 1:  # the newest keeps its images
                return
            if item.nbytes:
                if not self._counts["images_dropped"]:
                    log.warning("sink %s: more than %g MB of images queued; the oldest decisions go without their images",
                                self.name, self.options.queue_mb)
                self._queued_bytes -= item.nbytes
                self._queue[k] = Item(item.decision)
                self._counts["images_dropped"] += 1

    def stats(self) -> dict[str, int]:
        """sent, dropped, failed, retries, images_dropped, queued."""
        with self._cond:
            return {**self._counts, "queued": len(self._queue)}

    def close(self, timeout: float = 5.0) -> dict[str, int]:
        """Deliver what is queued within `timeout` seconds, stop, release resources.

        Returns stats() plus `unsent`: decisions still queued or in flight when time ran out.
        Calling it again returns the same report.
        """
        with self._cond:
            if self._report is not None:
                return self._report
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.0))
            if self._thread.is_alive():
                self._abort.set()
                self._thread.join(self.abort_grace_s)  # let the delivery in flight finish: never exit with it in native code
                if self._thread.is_alive():
                    log.warning("sink %s: a delivery is still running %.0f s after close; leaving it", self.name, self.abort_grace_s)
        try:
            self._release()
        except Exception as exc:  # a sink that cannot release must not break the caller's shutdown
            log.warning("sink %s: error while closing: %s", self.name, exc)
        with self._cond:
            report = {**self._counts, "queued": len(self._queue), "unsent": len(self._queue) + self._inflight}
            self._report = report
        if report["unsent"] or report["failed"] or report["dropped"] or report["images_dropped"]:
            log.warning(
                "sink %s closed: %d delivered, %d not delivered in time, %d failed, %d dropped, %d delivered without their images",
                self.name, report["sent"], report["unsent"], report["failed"], report["dropped"], report["images_dropped"],
            )
        return report

    # -- for subclasses ---------------------------------------------------------------------

    @property
    def abort_grace_s(self) -> float:
        """How long one delivery can take: network sinks are bounded by their timeout."""
        return self.options.timeout_s + 1.0

    def _accept(self, decision: Decision, frame: np.ndarray | None, amap: np.ndarray | None) -> Item | None:
        """The item to queue, or None to ignore this decision. Runs in the caller's thread: keep it cheap."""
        return Item(decision)

    def _deliver(self, item: Item) -> None:
        """Deliver one item or raise (PermanentError: do not retry). Runs in the worker thread."""
        raise NotImplementedError

    def _release(self) -> None:
        """Release connections, files, servers. Runs in close(), after the worker stopped or timed out."""

    # -- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._abort.is_set():
                    return
                item = self._queue.popleft()
                self._queued_bytes -= item.nbytes
                self._inflight = 1
            outcome = self._attempt(item)
            with self._cond:
                self._inflight = 0
                if outcome is None:
                    self._queue.appendleft(item)  # aborted by close(): reported as unsent
                    self._queued_bytes += item.nbytes
                    return
                self._counts[outcome] += 1

    def _attempt(self, item: Item) -> str | None:
        """Try, then retry with backoff: 'sent', 'failed', or None when close() aborted the wait."""
        opts = self.options
        for attempt in range(opts.retries + 1):
            if attempt:
                if self._abort.wait(min(opts.backoff_max_s, opts.backoff_s * 2 ** (attempt - 1))):
                    return None
                with self._cond:
                    self._counts["retries"] += 1
            try:
                self._deliver(item)
            except PermanentError as exc:
                self._set_health(False, exc)
                return "failed"
            except Exception as exc:  # any delivery error is retried; the loop must keep running
                self._set_health(False, exc)
                continue
            self._set_health(True)
            return "sent"
        return "failed"

    def _set_health(self, healthy: bool, exc: Exception | None = None) -> None:
        """Log only the changes between delivering and failing, not every failure."""
        if healthy and not self._healthy:
            log.warning("sink %s: delivering again", self.name)
        elif not healthy and self._healthy:
            log.warning(
                "sink %s: delivery failing (%s: %s); retrying with backoff, newest %d decisions kept",
                self.name, type(exc).__name__, exc, self.options.queue,
            )
        self._healthy = healthy
