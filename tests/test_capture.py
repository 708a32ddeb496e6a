"""The capture thread: ring buffer drops the oldest, accounting, reconnects with backoff, prompt stop."""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefreq.errors import UserError
from edgefreq.runtime.capture import Capture, usable
from edgefreq.runtime.frame import Frame
from edgefreq.runtime.sources import EndOfStream, Source, SourceOptions, SyntheticLine, open_source

FAST = dict(timeout=0.2, reconnect_initial=0.01, reconnect_max=0.08)


def _image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value % 256, np.uint8)


class ScriptedSource(Source):
    """Plays `script` (images, None for a read that timed out, exceptions, or callables returning
    one), then ends (EndOfStream).

    After reopen() it plays `after_reopen`, if given; `fail_reopens` reopen calls raise first.
    """

    def __init__(self, script: list, live: bool, after_reopen: list | None = None, fail_reopens: int = 0) -> None:
        self.uri = "test://scripted"
        self.is_live = live
        self._script = collections.deque(script)
        self._after = after_reopen
        self._fail_reopens = fail_reopens
        self.reopen_times: list[float] = []
        self.closed = False

    def read(self) -> np.ndarray | None:
        if not self._script:
            raise EndOfStream(self.uri)
        item = self._script.popleft()
        if isinstance(item, BaseException):
            raise item
        return item() if callable(item) else item

    def close(self) -> None:
        self.closed = True

    def reopen(self) -> None:
        self.reopen_times.append(time.monotonic())
        if self._fail_reopens:
            self._fail_reopens -= 1
            raise UserError("test://scripted: camera still gone")
        if self._after is not None:
            self._script = collections.deque(self._after)


def _frames(capture: Capture):
    """Every frame until the stream is over, as the line reads them (get with a timeout)."""
    while True:
        try:
            frame = capture.get(0.25)
        except EndOfStream:
            return
        if frame is not None:
            yield frame


def _drain(capture: Capture, limit: float = 10.0) -> list[Frame]:
    frames, deadline = [], time.monotonic() + limit
    for frame in _frames(capture):
        frames.append(frame)
        assert time.monotonic() < deadline
    return frames


def _wait_for(predicate, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_synthetic_end_to_end_ids_and_truth() -> None:
    options = SourceOptions(max_frames=40)
    capture = Capture(open_source("synthetic://?seed=2&defect_rate=0.5&size=64x64", options), options, capacity=64)
    frames = _drain(capture)
    line = SyntheticLine((64, 64), seed=2, defect_rate=0.5)
    assert [f.frame_id for f in frames] == list(range(40))
    assert [f.truth for f in frames] == [line.frame(i)[1] for i in range(40)]
    assert np.array_equal(frames[7].image, line.frame(7)[0])
    assert frames[0].source == "synthetic://?seed=2&defect_rate=0.5&size=64x64"
    assert all(a.timestamp <= b.timestamp for a, b in zip(frames, frames[1:]))
    stats = capture.stats()
    assert (stats.captured, stats.delivered, stats.dropped, stats.buffered) == (40, 40, 0, 0)
    with pytest.raises(EndOfStream):
        capture.get(0.01)


def test_video_file_ends_cleanly_after_its_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    options = SourceOptions(loop=2)
    capture = Capture(open_source(f"file://{path}", options), options, capacity=32)
    frames = _drain(capture)
    assert len(frames) == 10 and frames[0].truth is None
    assert capture.stats().captured == 10


def test_full_ring_drops_the_oldest() -> None:
    """A paced source (a file replayed like a camera) never waits for the consumer."""
    source = ScriptedSource([_image(i) for i in range(10)], live=False)
    capture = Capture(source, SourceOptions(rate=1000), capacity=4)
    deadline = time.monotonic() + 5
    while capture.stats().captured < 10 and time.monotonic() < deadline:  # let it read everything unconsumed
        time.sleep(0.01)
    assert [f.frame_id for f in _drain(capture)] == [6, 7, 8, 9]
    stats = capture.stats()
    assert (stats.captured, stats.dropped, stats.delivered) == (10, 6, 4)
    assert source.closed


def test_unpaced_finite_source_waits_for_room() -> None:
    """A folder or file read as fast as possible loses nothing to a slow consumer."""
    source = ScriptedSource([_image(i) for i in range(10)], live=False)
    capture = Capture(source, capacity=2)
    frames = []
    for frame in _frames(capture):
        frames.append(frame)
        time.sleep(0.01)
    assert [f.frame_id for f in frames] == list(range(10))
    assert capture.stats().dropped == 0


def test_slow_consumer_every_frame_delivered_or_counted_dropped() -> None:
    options = SourceOptions(rate=400, max_frames=120)
    capture = Capture(open_source("synthetic://?size=32x32", options), options, capacity=3)
    frames = []
    for frame in _frames(capture):
        frames.append(frame)
        time.sleep(0.01)
    stats = capture.stats()
    ids = [f.frame_id for f in frames]
    assert stats.captured == 120 and stats.dropped > 0
    assert stats.captured == stats.delivered + stats.dropped and stats.delivered == len(frames)
    assert ids == sorted(set(ids)) and ids[-1] == 119
    gaps = sum(b - a - 1 for a, b in zip(ids, ids[1:])) + ids[0]
    assert gaps == stats.dropped  # the ids show exactly the frames that were dropped


def test_rate_paces_finite_sources() -> None:
    options = SourceOptions(rate=50, max_frames=6)
    start = time.monotonic()
    frames = _drain(Capture(open_source("synthetic://?size=32x32", options), options, capacity=8))
    assert len(frames) == 6 and time.monotonic() - start >= 5 / 50 * 0.9


def test_get_waits_at_most_its_timeout() -> None:
    source = ScriptedSource([lambda: time.sleep(0.005)] * 100000, live=True)  # a live source with no frames
    capture = Capture(source, SourceOptions(timeout=60))
    start = time.monotonic()
    assert capture.get(0.1) is None
    assert 0.09 <= time.monotonic() - start < 1.0
    assert capture.get(0.01) is None  # a timeout again: the stream is not over
    capture.stop()


def test_live_source_failing_mid_stream_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    good = [_image(i) for i in range(5)]
    source = ScriptedSource(good + [OSError("USB reset")], live=True, after_reopen=good * 100)
    with caplog.at_level(logging.WARNING, logger="edgefreq"):
        capture = Capture(source, SourceOptions(**FAST), capacity=64)
        frames = [capture.get(2.0) for _ in range(12)]
        capture.stop()
    assert all(f is not None for f in frames)
    stats = capture.stats()
    assert stats.errors == 1 and stats.reconnects == 1 and len(source.reopen_times) == 1
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == "edgefreq")
    assert "read failed: USB reset" in messages and "reconnected" in messages


def test_reconnect_backoff_grows_until_the_source_returns(caplog: pytest.LogCaptureFixture) -> None:
    source = ScriptedSource([_image(0), RuntimeError("link down")], live=True, after_reopen=[_image(1)] * 1000, fail_reopens=3)
    options = SourceOptions(timeout=1, reconnect_initial=0.02, reconnect_max=0.1)
    with caplog.at_level(logging.WARNING, logger="edgefreq"):
        capture = Capture(source, options, capacity=8)
        _wait_for(lambda: capture.stats().reconnects == 1)
        capture.stop()
    times = source.reopen_times
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.08 and gaps[2] >= 0.1  # 0.02 -> 0.04 -> 0.08 -> capped at 0.1
    stats = capture.stats()
    assert stats.errors == 4 and stats.reconnects == 1  # the read error and three failed reopens
    delays = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert [d.split("reconnecting in ")[1].split(" s")[0] for d in delays] == ["0.02", "0.04", "0.08", "0.10"]
    assert "camera still gone" in delays[1]


def test_stalled_live_source_is_reopened(caplog: pytest.LogCaptureFixture) -> None:
    stall = [lambda: time.sleep(0.01)] * 100000  # the driver keeps timing out without a frame
    source = ScriptedSource([_image(i) for i in range(3)] + stall, live=True, after_reopen=[_image(9)] * 1000)
    with caplog.at_level(logging.WARNING, logger="edgefreq"):
        capture = Capture(source, SourceOptions(**FAST), capacity=4)
        _wait_for(lambda: capture.stats().reconnects == 1 and capture.stats().captured > 3)  # reopened, frames again
        capture.stop()
    stats = capture.stats()
    assert stats.stalls == 1 and stats.corrupt > 0 and stats.captured > 3
    assert any("no good frame for 0.2 s" in r.getMessage() for r in caplog.records)


def test_a_live_timeout_is_waited_out_a_finite_end_ends() -> None:
    """The same script, None reads among the frames: live, they are timeouts and every frame still
    comes; finite, the stream ends at the end of the script and not at the first None."""
    script = [_image(1), None, None, _image(2), None, _image(3)]
    quiet = [lambda: time.sleep(0.005)] * 100000  # then the driver keeps timing out
    live = Capture(ScriptedSource(script + quiet, live=True), SourceOptions(timeout=30), capacity=8)
    assert [live.get(2.0).frame_id for _ in range(3)] == [0, 1, 2]
    assert live.get(0.1) is None and live.stats().reconnects == 0  # quiet after the script: waiting, not ended
    live.stop()
    finite = Capture(ScriptedSource(script, live=False), SourceOptions(), capacity=8)
    assert [f.frame_id for f in _drain(finite)] == [0, 1, 2]
    assert finite.stats().corrupt == 3


def test_corrupt_frames_are_counted_and_skipped() -> None:
    bad = [None, np.zeros((0, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 2), np.uint8), "junk"]
    script = [_image(1), *bad, _image(2), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8), np.uint8)]
    source = ScriptedSource(script, live=True, after_reopen=[])
    capture = Capture(source, SourceOptions(timeout=30), capacity=16)
    frames = [capture.get(2.0) for _ in range(4)]
    capture.stop()
    assert [f.frame_id for f in frames] == [0, 1, 2, 3]
    assert [f.image.shape for f in frames] == [(8, 8, 3), (8, 8, 3), (8, 8, 3), (8, 8)]
    stats = capture.stats()
    assert stats.corrupt >= len(bad) and stats.reconnects == 0


def test_finite_source_error_reaches_the_consumer_after_its_frames() -> None:
    source = ScriptedSource([_image(1), _image(2), UserError("folder/img3.png: unreadable")], live=False)
    capture = Capture(source, capacity=8)
    assert capture.get(2.0).frame_id == 0 and capture.get(2.0).frame_id == 1
    with pytest.raises(UserError, match="unreadable"):
        capture.get(2.0)
    with pytest.raises(EndOfStream):  # the error is raised once; then the stream is simply over
        capture.get(0.01)
    assert source.closed


@pytest.mark.parametrize(
    ("source", "options"),
    [
        (ScriptedSource([lambda: _image(1)] * 10**6, live=False), SourceOptions()),  # as fast as possible
        (ScriptedSource([lambda: _image(1)] * 10, live=False), SourceOptions(rate=0.1)),  # long pacing wait
        (ScriptedSource([RuntimeError("gone")], live=True, fail_reopens=10**6), SourceOptions(reconnect_initial=30, reconnect_max=60)),
    ],
    ids=["running", "pacing", "backoff"],
)
def test_stop_returns_promptly(source: ScriptedSource, options: SourceOptions) -> None:
    capture = Capture(source, options)
    time.sleep(0.05)
    start = time.monotonic()
    capture.stop()
    assert time.monotonic() - start < 1.0
    assert not any(t.name == "edgefreq-capture" and t.is_alive() for t in threading.enumerate())
    assert source.closed


def test_usable_frame_shapes() -> None:
    assert usable(np.zeros((4, 4, 1), np.uint8)).shape == (4, 4)
    assert usable(np.zeros((4, 4, 4), np.uint8)).shape == (4, 4, 3)
    assert usable(np.zeros((4, 4, 3), np.uint16)) is None
    assert usable(np.zeros((2, 4, 4, 3), np.uint8)) is None
