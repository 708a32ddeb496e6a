"""Sink behaviour every sink shares: bounded queue, drop oldest, retries with backoff, close, URIs."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import wait_until

from edgefreq.errors import UserError
from edgefreq.runtime.sinks import PermanentError, Sink, SinkOptions, open_sink

FAST = SinkOptions(queue=8, retries=3, backoff_s=0.01, backoff_max_s=0.02)


class Recorder(Sink):
    """Delivers into a list; fails the first `failures` attempts; can be blocked by an event."""

    def __init__(self, options: SinkOptions = FAST, failures: int = 0, gate: threading.Event | None = None, error=ConnectionError):
        super().__init__("recorder://", options)
        self.got: list[int] = []
        self.failures, self.gate, self.error = failures, gate, error

    def _deliver(self, item):
        if self.gate is not None:
            self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise self.error("down")
        self.got.append(item.decision.frame_id)


class Dead(Sink):
    """Every delivery hangs for a while, then fails: the worst peer there is."""

    def _deliver(self, item):
        time.sleep(0.05)
        raise TimeoutError("no answer")


def test_delivers_in_order_and_counts(make_decision):
    sink = Recorder().start()
    for i in range(5):
        sink.submit(make_decision(i))
    report = sink.close(timeout=5)
    assert sink.got == [0, 1, 2, 3, 4]
    assert report == {"sent": 5, "dropped": 0, "failed": 0, "retries": 0, "images_dropped": 0, "queued": 0, "unsent": 0}


def test_full_queue_drops_the_oldest(make_decision):
    gate = threading.Event()
    sink = Recorder(gate=gate).start()
    sink.submit(make_decision(0))
    assert wait_until(lambda: sink.stats()["queued"] == 0)  # 0 is in flight, held at the gate
    for i in range(1, 21):
        sink.submit(make_decision(i))
    assert sink.stats()["dropped"] == 12 and sink.stats()["queued"] == 8
    gate.set()
    report = sink.close(timeout=5)
    assert sink.got == [0, *range(13, 21)]  # the newest 8 survive
    assert report["sent"] + report["dropped"] == 21


def test_retries_with_backoff_then_delivers(make_decision):
    sink = Recorder(failures=2).start()
    sink.submit(make_decision(7))
    report = sink.close(timeout=5)
    assert sink.got == [7] and report["retries"] == 2 and report["sent"] == 1 and report["failed"] == 0


def test_gives_up_after_bounded_retries(make_decision):
    sink = Recorder(failures=100).start()
    sink.submit(make_decision(1))
    sink.submit(make_decision(2))
    report = sink.close(timeout=5)
    assert report["failed"] == 2 and report["retries"] == 2 * FAST.retries and sink.got == []


def test_permanent_error_is_not_retried(make_decision):
    sink = Recorder(failures=1, error=PermanentError).start()
    sink.submit(make_decision(1))
    sink.submit(make_decision(2))
    report = sink.close(timeout=5)
    assert report["failed"] == 1 and report["retries"] == 0 and sink.got == [2]


def test_close_reports_what_it_could_not_deliver(make_decision):
    gate = threading.Event()  # never opened: the peer hangs
    sink = Recorder(SinkOptions(queue=8, retries=3, backoff_s=0.01, backoff_max_s=0.02, timeout_s=0.2), gate=gate).start()
    for i in range(5):
        sink.submit(make_decision(i))
    start = time.monotonic()
    report = sink.close(timeout=0.2)
    assert time.monotonic() - start < 0.2 + sink.abort_grace_s + 0.5  # bounded: the wait, then one delivery's time
    assert report["unsent"] == 5 and report["sent"] == 0
    sink.submit(make_decision(9))  # after close: counted, never raises
    assert sink.stats()["dropped"] == 1
    gate.set()


def test_a_dead_sink_never_slows_submit(make_decision):
    sink = Dead("dead://", SinkOptions(queue=16, retries=2, backoff_s=0.5, backoff_max_s=1.0)).start()
    decisions = [make_decision(i) for i in range(1000)]
    start = time.perf_counter()
    for d in decisions:
        sink.submit(d)
    elapsed = time.perf_counter() - start
    report = sink.close(timeout=0.1)
    assert elapsed < 1.0, f"1000 submits took {elapsed:.3f} s"
    assert report["dropped"] >= 1000 - 16 - 1
    assert report["sent"] == 0 and report["dropped"] + report["failed"] + report["unsent"] == 1000


def test_a_failing_accept_is_counted_not_raised(make_decision):
    class Picky(Recorder):
        def _accept(self, decision, frame, amap):
            raise TypeError("cannot copy this frame")

    sink = Picky().start()
    sink.submit(make_decision(1), frame=object())
    assert sink.close(timeout=5)["failed"] == 1


def test_options_are_checked():
    with pytest.raises(UserError, match="queue"):
        SinkOptions(queue=0)
    with pytest.raises(UserError, match="backoff"):
        SinkOptions(backoff_s=2.0, backoff_max_s=1.0)


@pytest.mark.parametrize(
    "uri, words",
    [
        ("", "empty"),
        ("ftp://host/x", "unknown kind"),
        ("out.txt", "unknown kind"),
        ("stdout://somewhere", "no host"),
        ("file://", "no path given"),
        ("mqtt:///topic", "broker host"),
        ("mqtt://broker", "topic"),
        ("mqtt://broker/line/#", "wildcard"),
        ("mqtt://broker/line/+/x", "wildcards"),
        ("mqtt://broker:99999/t", "port"),
        ("mqtt://broker/t?qos=3", "qos"),
        ("mqtt://broker/t?qos=1&qos=2", "twice"),
        ("mqtt://broker/t?color=red", "unknown option 'color'"),
        ("mqtt://user:secret@broker/t", "EDGEFREQ_MQTT_USERNAME"),
        ("https://user:pw@example.com/hook", "EDGEFREQ_WEBHOOK_TOKEN"),
        ("http:///hook", "needs a host"),
        ("modbus://127.0.0.1:5020/x", "no path"),
        ("modbus://127.0.0.1:0", "port"),
        ("nokdir://", "no path given"),
        ("display://1", "default display"),
        ("display://?title=x", "unknown option 'title'"),
        ("nokdir:///tmp/x?max_mb=0", "max_mb"),
        ("nokdir:///tmp/x?max_mb=lots", "number"),
    ],
)
def test_bad_uris_are_one_line_user_errors(uri, words):
    with pytest.raises(UserError) as info:
        open_sink(uri)
    message = str(info.value)
    assert words in message and "\n" not in message
    assert "secret" not in message


def test_stdout_writes_json_lines(make_decision, capsys):
    for uri in ("-", "stdout://"):
        sink = open_sink(uri)
        sink.submit(make_decision(3, "NOK"))
        assert sink.close(timeout=5)["sent"] == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all('"frame_id":3' in line and '"verdict":"NOK"' in line for line in lines)


class Keeper(Recorder):
    """Keeps the images it is given, like nokdir."""

    def _accept(self, decision, frame, amap):
        from edgefreq.runtime.sinks import Item

        return Item(decision, None if frame is None else frame.copy(), amap)

    def _deliver(self, item):
        super()._deliver(item)
        self.images = getattr(self, "images", []) + [item.frame is not None]


def test_the_queue_is_capped_in_bytes_of_images_and_keeps_every_decision(make_decision):
    import numpy as np

    gate = threading.Event()
    sink = Keeper(SinkOptions(queue=64, queue_mb=50.0), gate=gate).start()
    frame = np.zeros((2160, 3840, 3), np.uint8)  # a 4K frame: 24.9 MB
    for i in range(20):
        sink.submit(make_decision(i, "NOK"), frame)
        with sink._cond:
            assert sink._queued_bytes <= 50e6 + frame.nbytes  # never more than the cap (+ the one in flight's copy)
    gate.set()
    report = sink.close(timeout=10)
    assert report["sent"] == 20 and report["dropped"] == 0 and report["images_dropped"] >= 17
    assert sink.got == list(range(20)) and sink.images[-1]  # every decision; the newest kept its image
