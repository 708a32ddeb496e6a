"""Part triggers through the real loop (embedded model, ONNX Runtime): the first frame read after
a trigger is the one inspected, every trigger gets exactly one record, a trigger without a frame
is a fail-safe NOK with its reason, a flood above the queue is counted NOK, never lost."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgefreq.errors import UserError
from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.backends import EMBEDDED
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.sources import SourceOptions
from edgefreq.runtime.sources.base import Source
from edgefreq.runtime.trigger import Triggers, check_part_id

pytest.importorskip("onnxruntime")


class Camera(Source):
    """A live camera at `period` s per frame that remembers when each read began (frame id = read
    index), and can stop delivering (`stalled`) like a camera whose cable was pulled."""

    uri, is_live = "test://camera", True

    def __init__(self, period: float = 0.01) -> None:
        self.period, self.started, self.stalled = period, [], threading.Event()
        self.image = np.full((64, 64, 3), 128, np.uint8)

    def read(self):
        start = time.time()
        time.sleep(self.period)
        if self.stalled.is_set():
            return None
        self.started.append(start)
        return self.image

    def waiting(self) -> bool:
        return self.stalled.is_set()  # a quiet camera, not a broken one: no reconnects

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector(open_backend(EMBEDDED, threads=1))


def line(inspector, camera, triggers, drive, capacity: int = 4):
    """Run the loop in part mode while `drive(triggers, stop)` fires parts; returns (summary, decisions)."""
    decisions, stop = [], threading.Event()
    capture = Capture(camera, SourceOptions(timeout=5.0), capacity=capacity)
    driver = threading.Thread(target=lambda: (drive(triggers), stop.set()))
    driver.start()
    summary = run_line(capture, inspector, [], stop, triggers=triggers, on_inspection=lambda x: decisions.append(x.decision))
    driver.join()
    return summary, decisions


def test_each_part_gets_the_first_frame_read_after_its_trigger(inspector) -> None:
    camera, fired = Camera(period=0.01), []

    def drive(triggers):
        for k in range(30):
            time.sleep(0.013 * (1 + k % 3))  # off the frame clock, so triggers fall mid-read
            fired.append(triggers.fire(f"P{k}", via="test"))
        time.sleep(0.3)

    summary, decisions = line(inspector, camera, Triggers("modbus", timeout_s=2.0), drive)
    assert [d.part_id for d in decisions] == [f"P{k}" for k in range(30)]
    for trigger, d in zip(fired, decisions):
        assert d.reason is None and d.trigger_ts == trigger.ts and d.frame_id >= trigger.first_frame
        assert camera.started[d.frame_id] >= trigger.ts  # exposed after the part arrived, never older
        assert d.latency_ms["trigger"] >= d.latency_ms["total"] and d.decided_ts >= trigger.ts
    assert summary.triggers["matched"] == 30 and summary.between_parts > 0
    assert summary.frames == 30 and summary.not_inspected == 0


def test_a_buffered_frame_older_than_the_trigger_is_never_inspected() -> None:
    camera = Camera(period=0.005)
    with Capture(camera, SourceOptions(), capacity=8) as capture:
        while capture.stats().buffered < 8:  # nobody reads: the ring fills with frames from before the part
            time.sleep(0.01)
        triggers = Triggers("http")
        triggers.attach(capture.mark)
        trigger = triggers.fire("4711", via="test")
        old = [capture.get(timeout=1) for _ in range(8)]
        assert all(triggers.match(f.frame_id) is None for f in old if f.frame_id < trigger.first_frame)
        frame = capture.get(timeout=1)
        while triggers.match(frame.frame_id) is None:
            frame = capture.get(timeout=1)
        assert camera.started[frame.frame_id] >= trigger.ts


def test_a_trigger_without_a_frame_is_a_failsafe_nok_with_its_reason(inspector) -> None:
    camera = Camera(period=0.01)

    def drive(triggers):
        triggers.fire("ok-1", via="test")
        time.sleep(0.2)
        camera.stalled.set()
        time.sleep(0.05)
        triggers.fire("lost-2", via="test")
        time.sleep(0.6)

    summary, decisions = line(inspector, camera, Triggers("modbus", timeout_s=0.3), drive)
    assert [d.part_id for d in decisions] == ["ok-1", "lost-2"]
    missed = decisions[1]
    assert missed.verdict == "NOK" and missed.frame_id is None and missed.score != missed.score  # NaN: no score
    assert missed.reason == "no frame within 0.3 s of the trigger" and missed.latency_ms["trigger"] >= 300
    assert summary.triggers["timed_out"] == 1 and summary.not_inspected == 1 and summary.nok >= 1


def test_a_trigger_flood_above_the_queue_is_counted_nok_never_lost(inspector) -> None:
    camera = Camera(period=0.05)  # 20 fps, the flood comes within one frame

    def drive(triggers):
        for k in range(50):
            triggers.fire(str(k), via="test")
        time.sleep(0.6)

    summary, decisions = line(inspector, camera, Triggers("modbus", capacity=4, timeout_s=5.0), drive)
    assert sorted(int(d.part_id) for d in decisions) == list(range(50))  # every part has its one record
    full = [d for d in decisions if d.reason and d.reason.startswith("trigger queue full")]
    assert len(full) == 46 == summary.triggers["overflow"] and all(d.verdict == "NOK" for d in full)
    assert summary.triggers["matched"] == 4 and summary.not_inspected == 46


def test_parts_still_waiting_when_the_line_stops_are_answered_and_later_ones_refused(inspector) -> None:
    camera = Camera(period=0.01)
    camera.stalled.set()
    triggers = Triggers("modbus", timeout_s=60)

    summary, decisions = line(inspector, camera, triggers, lambda t: (t.fire("7", via="test"), time.sleep(0.2)))
    assert [(d.part_id, d.reason) for d in decisions] == [("7", "the line stopped before a frame came")]
    with pytest.raises(RuntimeError, match="stopping"):
        triggers.fire("8", via="test")


def test_bad_trigger_settings_and_part_ids_are_refused() -> None:
    with pytest.raises(UserError, match="--trigger-timeout"):
        Triggers("modbus", timeout_s=0)
    with pytest.raises(UserError, match="--trigger-queue"):
        Triggers("modbus", capacity=0)
    with pytest.raises(UserError, match="--trigger"):
        Triggers("serial")
    for bad in ("", "x" * 65, "a\nb", "../etc", "a b"):
        with pytest.raises(ValueError, match="part id"):
            check_part_id(bad)
    assert check_part_id(4711) == "4711"
