"""The loop's one frame-reading path: a live source's timeouts keep the line waiting, a finite
source's end ends it, a stop finishes what was captured, batches never lose a frame."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgefreq.errors import UserError
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.record import Inspection
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.sources import SourceOptions
from test_capture import ScriptedSource as Script  # images, None (a timeout), exceptions, then the end


class Counter:
    """An inspector that decides every frame OK and remembers the batch sizes it was given."""

    def __init__(self, make_decision) -> None:
        self.make, self.batches = make_decision, []

    def inspect(self, batch, dropped: int) -> list[Inspection]:
        self.batches.append(len(batch))
        return [Inspection(self.make(f.frame_id), f, None, f.image) for f in batch]


def _image() -> np.ndarray:
    return np.zeros((8, 8), np.uint8)


def _run(capture: Capture, inspector: Counter, stop: threading.Event | None = None, max_batch: int = 1, limit: float = 10.0):
    """run_line in a thread: (summary or None when it had not returned within `limit` s)."""
    out = []
    stop = stop or threading.Event()
    thread = threading.Thread(target=lambda: out.append(run_line(capture, inspector, [], stop, max_batch=max_batch)), daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        stop.set()
        thread.join(5)
    return out[0] if out and not stop.is_set() else None


def test_a_finite_source_that_ends_ends_the_line(make_decision) -> None:
    capture = Capture(Script([_image() for _ in range(7)], live=False), SourceOptions(), capacity=2)
    summary = _run(capture, Counter(make_decision))
    assert summary is not None, "the line did not end with its source"
    assert summary.frames == 7 and summary.source_error is None


def test_a_live_source_that_times_out_keeps_the_line_waiting(make_decision) -> None:
    """Long quiet spells (reads that time out) between frames: every frame is decided, the line
    only ends at max_frames (a live source never ends by itself)."""
    quiet = [lambda: time.sleep(0.01)] * 30  # 0.3 s of timeouts, under the 5 s stall timeout
    script = [_image(), *quiet, _image(), *quiet, _image()] + [lambda: time.sleep(0.01)] * 10**5
    capture = Capture(Script(script, live=True), SourceOptions(max_frames=3))
    summary = _run(capture, Counter(make_decision))
    assert summary is not None and summary.frames == 3 and capture.stats().reconnects == 0


def test_batches_take_what_is_buffered_and_lose_nothing_at_the_end(make_decision) -> None:
    inspector = Counter(make_decision)
    summary = _run(Capture(Script([_image() for _ in range(10)], live=False), SourceOptions(), capacity=16), inspector, max_batch=4)
    assert summary is not None and summary.frames == 10
    assert sum(inspector.batches) == 10 and max(inspector.batches) <= 4


def test_a_finite_source_that_breaks_keeps_the_frames_before_it(make_decision) -> None:
    script = [_image(), _image(), _image(), UserError("test://script: the file broke")]
    summary = _run(Capture(Script(script, live=False), SourceOptions(), capacity=8), Counter(make_decision), max_batch=8)
    assert summary is not None and summary.frames == 3 and "the file broke" in summary.source_error


def test_a_stop_finishes_the_frames_already_captured(make_decision) -> None:
    """Stopped with frames in the ring: they are decided; nothing new is read after the stop."""
    source = Script([_image() for _ in range(5)] + [lambda: time.sleep(0.01)] * 10**5, live=True)
    capture = Capture(source, SourceOptions(timeout=60), capacity=8)
    deadline = time.monotonic() + 5
    while capture.stats().captured < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop = threading.Event()
    stop.set()
    summary = run_line(capture, Counter(make_decision), [], stop)
    assert summary.frames == 5 and summary.captured == 5


@pytest.mark.parametrize("live", [True, False])
def test_end_of_stream_is_not_an_error(make_decision, live: bool) -> None:
    summary = _run(Capture(Script([_image()], live=live), SourceOptions()), Counter(make_decision))
    assert summary is not None and summary.frames == 1 and summary.source_error is None
