"""systemd's notify protocol against a fake NOTIFY_SOCKET (a unix datagram socket the test reads):
READY once the engine is loaded, watchdog pings from the loop and while it idles, none while a
frame hangs, STOPPING at the end."""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from edgefreq.runtime.backends import EMBEDDED, open_backend  # noqa: E402
from edgefreq.runtime.capture import Capture  # noqa: E402
from edgefreq.runtime.inspector import Inspector  # noqa: E402
from edgefreq.runtime.loop import run_line  # noqa: E402
from edgefreq.runtime.service import LineService  # noqa: E402
from edgefreq.runtime.sources import SourceOptions, open_source  # noqa: E402
from edgefreq.runtime.systemd import Notifier  # noqa: E402


class FakeSystemd:
    """Receives notify datagrams in a thread: (monotonic time, message) pairs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def pings(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [t for t, m in self.messages if m == "WATCHDOG=1" and since <= t <= until]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class HangingBackend:
    """The embedded engine, whose infer() blocks while `hang` is set (a stuck GPU, a deadlock)."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.hang = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def infer(self, bands):
        if self.hang.is_set():
            self.release.wait(30)
        return self._backend.infer(bands)


@pytest.fixture
def systemd(tmp_path: Path):
    fake = FakeSystemd(tmp_path / "notify")
    yield fake
    fake.close()


def args() -> argparse.Namespace:
    return argparse.Namespace(http=None, feedback=None, gallery=8, ready_within=10.0)


def start(environ: dict, rate: float):
    service = LineService(args(), environ)
    backend = HangingBackend(open_backend(EMBEDDED, threads=1))
    inspector = Inspector(backend)
    options = SourceOptions(rate=rate, max_frames=0)
    capture = Capture(open_source("synthetic://", options), options)
    stop = threading.Event()
    service.ready(inspector, capture, [], "synthetic://")
    thread = threading.Thread(target=run_line, args=(capture, inspector, [], stop), kwargs={"on_inspection": service.observer(None)}, daemon=True)
    thread.start()

    def finish() -> None:
        backend.release.set()
        stop.set()
        thread.join(30)
        service.close()
        backend.close()

    return service, backend, finish


def test_ready_watchdog_and_stopping(systemd: FakeSystemd) -> None:
    environ = {"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "300000"}  # 0.3 s: a ping at least every 0.1 s
    service, backend, finish = start(environ, rate=30.0)
    try:
        time.sleep(1.0)
        assert systemd.messages and systemd.messages[0][1] == "READY=1"
        beats = systemd.pings()
        assert len(beats) >= 6 and max(b - a for a, b in zip(beats, beats[1:])) < 0.3, beats

        backend.hang.set()  # the next frame never comes out of the engine
        hung_at = time.monotonic()
        time.sleep(1.5)
        assert systemd.pings(hung_at + 0.2, hung_at + 1.5) == [], "the watchdog was fed while a frame hung"
        backend.hang.clear()
        backend.release.set()
        resumed = time.monotonic()
        time.sleep(0.6)
        assert systemd.pings(resumed), "no ping after the line recovered"
        assert any(m.startswith("STATUS=") and "frames" in m for _, m in systemd.messages)
    finally:
        finish()
    time.sleep(0.2)
    assert systemd.messages[-1][1] == "STOPPING=1"


@pytest.mark.parametrize(("rate", "seconds", "at_least"), [
    # a line waiting for its next part (one frame every 2 s) is alive: the idle thread pings between frames
    pytest.param(0.5, 1.8, 6, id="idle-line-fed-by-the-idle-thread"),
    # frames as fast as they come (the ring never empties): every ping comes from the loop's decisions
    pytest.param(0.0, 1.5, 8, id="busy-line-fed-from-the-loop"),
])
def test_the_watchdog_is_fed_every_interval(systemd: FakeSystemd, rate: float, seconds: float, at_least: int) -> None:
    """WATCHDOG_USEC=300000: pings keep coming, never more than 0.3 s apart, whether the line idles or is busy."""
    environ = {"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "300000"}
    _, _, finish = start(environ, rate=rate)
    try:
        time.sleep(seconds)
        beats = systemd.pings()
        assert len(beats) >= at_least and max(b - a for a, b in zip(beats, beats[1:])) < 0.3, beats
    finally:
        finish()


def test_notifier_addresses_and_the_watchdog_pid(tmp_path: Path, systemd: FakeSystemd) -> None:
    assert not Notifier({}).enabled and Notifier({}).watchdog_s is None
    assert not Notifier({}).send("READY=1")
    assert Notifier({"NOTIFY_SOCKET": "@edgefreq-test"}).address == "\0edgefreq-test"
    ours = Notifier({"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert ours.watchdog_s == 2.0 and ours.send("READY=1")
    other = Notifier({"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # the watchdog is for another process
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert not gone.send("READY=1") and not gone.enabled  # logged once, then off; the line goes on
