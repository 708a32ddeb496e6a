"""The capture thread: reads a source into a small ring buffer that drops the oldest frame.

    capture = Capture(open_source(uri, options), options)
    frame = capture.get(timeout=0.5)  # a frame, None (nothing came in time), or raises EndOfStream
    ...                               # (the stream is over)
    capture.stop()

- Frame ids are consecutive per captured frame, so a dropped frame leaves a gap in the ids the
  consumer sees; at any moment captured == delivered + dropped + buffered (see `stats()`).
- The consumer never waits longer than its `get` timeout. A live source, or any source paced by
  `options.rate` (a file replayed as a camera), never waits for the consumer: the oldest frame is
  dropped. A file, folder or synthetic source read as fast as possible waits for room instead,
  so every one of its frames is inspected.
- A read gives a frame, None (no frame this time: a live driver timed out), or raises EndOfStream
  (a finite source is over: the stream ends). A live source that raises, or gives no good frame
  for `options.timeout` seconds, is reopened
  with exponential backoff (`reconnect_initial` doubling up to `reconnect_max`, reset by the next
  good frame); every attempt and every reconnect is logged on the "edgefreq" logger.
- A corrupt frame from a live source (None, empty, not uint8, not gray/BGR) is counted and skipped:
  a camera's bad read is not a part. An item of a finite source that cannot be read (a corrupt or
  deleted file of a folder) is a part: it is captured as a frame with `error` set and no image, and
  gets a fail-safe NOK decision like any frame that cannot be inspected.
- A frame's source is the source URI, plus the file name when the source names its items.
- A finite source ends the stream when it is done (after its `loop` passes): `get` raises
  EndOfStream once the frames before the end are delivered; an error it raises ends the stream
  too and is raised by `get` instead, once.
- `options.rate` paces finite and synthetic sources; `options.max_frames` ends any source.
- Capture owns the source and closes it when the stream ends or on `stop()`.
- `mark()` is the id of the first frame whose read starts after the call (a part trigger: the
  loop inspects the first frame with at least that id, never one read before the part arrived).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from edgefreq.runtime.frame import Frame
from edgefreq.runtime.sources import EndOfStream, Sample, Source, SourceOptions

log = logging.getLogger("edgefreq")


@dataclass(frozen=True)
class CaptureStats:
    """Counters of one capture; captured == delivered + dropped + buffered. `lost`: frames the
    source itself lost before capture (Source.lost(): a GenICam camera's incomplete buffers)."""

    captured: int = 0
    delivered: int = 0
    dropped: int = 0
    buffered: int = 0
    corrupt: int = 0
    errors: int = 0
    stalls: int = 0
    reconnects: int = 0
    lost: int = 0


def usable(image: object) -> np.ndarray | None:
    """The frame as H x W gray or H x W x 3 BGR uint8 (BGRA loses alpha), or None if corrupt."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        return None
    if image.ndim == 2:
        return image
    if image.ndim != 3:
        return None
    if image.shape[2] == 3:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return None


class Capture:
    """Reads `source` in a thread into a ring of `capacity` frames; see the module docstring."""

    def __init__(self, source: Source, options: SourceOptions | None = None, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.source = source
        self.options = SourceOptions() if options is None else options
        self.capacity = capacity
        self._ring: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._counts = dict.fromkeys(("captured", "delivered", "dropped", "corrupt", "errors", "stalls", "reconnects"), 0)
        self._backoff = self.options.reconnect_initial
        self._reading = False  # a read is in progress whose frame is not pushed yet
        self._thread = threading.Thread(target=self._run, name="edgefreq-capture", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ consumer side
    def get(self, timeout: float | None) -> Frame | None:
        """The oldest buffered frame, waiting at most `timeout` s (None = until one comes or the end).

        None when nothing came in time. When the stream is over and every frame captured before
        its end was handed out: EndOfStream, or once the error that ended a finite source.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ring and not self._ended:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._ring:
                self._counts["delivered"] += 1
                self._cond.notify_all()  # room for a reader waiting to push
                return self._ring.popleft()
            error, self._error = self._error, None
        raise EndOfStream(self.source.uri) if error is None else error

    def mark(self, in_flight: bool = True) -> int:
        """The id the first frame read after this call will get. `in_flight=False` for a camera that
        exposes only on a trigger sent after the mark: then the read waiting now already counts."""
        with self._cond:
            return self._counts["captured"] + (in_flight and self._reading)

    def stats(self) -> CaptureStats:
        with self._cond:
            return CaptureStats(buffered=len(self._ring), lost=self.source.lost(), **self._counts)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and wait up to `timeout` s for the thread; buffered frames stay readable.

        A read blocked inside a driver cannot be interrupted from Python: the thread is a daemon,
        and it is left behind with a warning if it does not finish in time.
        """
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: capture thread still blocked in a read after %.1f s; leaving it behind", self.source.uri, timeout)

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ capture thread
    def _count(self, name: str) -> None:
        with self._cond:
            self._counts[name] += 1

    def _push(self, image: np.ndarray | None, sample: Sample, wait_for_room: bool, error: str | None = None) -> None:
        uri = self.source.uri
        where = f"{uri.rstrip('/')}/{sample.name}" if sample.name else uri
        with self._cond:
            while wait_for_room and len(self._ring) == self.capacity and not self._stop.is_set():
                self._cond.wait(0.1)
            frame = Frame(self._counts["captured"], time.time(), image, where, sample.truth, error)
            self._counts["captured"] += 1
            self._reading = False
            if len(self._ring) == self.capacity:
                self._ring.popleft()
                self._counts["dropped"] += 1
            self._ring.append(frame)
            self._cond.notify()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # handed to the consumer by get()
            self._error = exc
        finally:
            try:
                self.source.close()
            except Exception as exc:  # closing must not hide how the stream ended
                log.warning("%s: error while closing: %s", self.source.uri, exc)
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _loop(self) -> None:
        opts, source = self.options, self.source
        live = source.is_live
        period = 1.0 / opts.rate if opts.rate > 0 and not live else 0.0
        due = time.monotonic()
        last_good = time.monotonic()
        corrupt_streak = 0
        while not self._stop.is_set():
            if opts.max_frames and self._counts["captured"] >= opts.max_frames:
                return
            if period:
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                due = max(due + period, time.monotonic() - period)
            with self._cond:
                self._reading = True
            try:
                item = source.read_sample()
            except EndOfStream:
                return
            except Exception as exc:
                self._reading = False
                if not live:
                    raise
                self._count("errors")
                self._reconnect(f"read failed: {exc}")
                last_good = time.monotonic()
                continue
            if item is None and source.waiting():  # a triggered camera between parts
                self._reading = False
                last_good = time.monotonic()
                continue
            image = None if item is None else usable(item.image)
            if image is None and item is not None and not live:  # a part that cannot be read: decided, not skipped
                error = item.error or f"not an 8-bit gray or BGR image ({_describe(item)})"
                self._push(None, item, wait_for_room=not period, error=error)
                continue
            if image is not None:
                self._push(image, item, wait_for_room=not live and not period)
                last_good = time.monotonic()
                self._backoff = opts.reconnect_initial
                corrupt_streak = 0
                continue
            self._count("corrupt")
            self._reading = False
            corrupt_streak += 1
            if corrupt_streak == 1:
                log.warning("%s: corrupt or missing frame, skipped (%s)", source.uri, _describe(item))
            if live and time.monotonic() - last_good > opts.timeout:
                self._count("stalls")
                self._reconnect(f"no good frame for {opts.timeout:g} s")
                last_good = time.monotonic()
            else:
                self._stop.wait(min(0.01, opts.timeout / 10))

    def _reconnect(self, reason: str) -> None:
        """Reopen the live source, retrying with exponential backoff until it opens or stop()."""
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            delay = self._backoff
            log.warning("%s: %s; reconnecting in %.2f s (attempt %d)", self.source.uri, reason, delay, attempt)
            if self._stop.wait(delay):
                return
            self._backoff = min(delay * 2, self.options.reconnect_max)
            try:
                self.source.reopen()
            except Exception as exc:
                self._count("errors")
                reason = f"reopen failed: {exc}"
                continue
            self._count("reconnects")
            log.warning("%s: reconnected (attempt %d)", self.source.uri, attempt)
            return


def _describe(item: Sample | None) -> str:
    if item is None:
        return "no frame"
    image = item.image
    if isinstance(image, np.ndarray):
        return f"array {image.shape} {image.dtype}"
    return type(image).__name__
