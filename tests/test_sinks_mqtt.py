"""MQTT sink against a real mosquitto broker on loopback (see conftest.py for the broker fixture)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port, require_binary, wait_until

from edgefreq.errors import UserError
from edgefreq.runtime.record import SCHEMA
from edgefreq.runtime.sinks import SinkOptions, open_sink

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

TOPIC = "line1/decisions"
QUICK = SinkOptions(queue=8, retries=2, backoff_s=0.05, backoff_max_s=0.2, timeout_s=0.5)


class Subscriber:
    """A paho client that (re)subscribes on every connect and keeps what arrives."""

    def __init__(self, port: int, topics: list[str], tls_ca: str | None = None, login: tuple[str, str] | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self.subscriptions = 0
        self._lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        if tls_ca:
            client.tls_set(ca_certs=tls_ca)
        if login:
            client.username_pw_set(*login)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 1)
        client.connect_async("127.0.0.1", port)
        client.loop_start()
        self.client = client
        assert wait_until(lambda: self.subscriptions >= 1, 10), "test subscriber could not subscribe"

    def _on_subscribe(self, *args) -> None:
        self.subscriptions += 1

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def frames(self, topic: str = TOPIC) -> list[int]:
        with self._lock:
            return [json.loads(p)["frame_id"] for t, p in self.messages if t == topic]

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory():
    made: list[Subscriber] = []

    def make(*args, **kwargs) -> Subscriber:
        made.append(Subscriber(*args, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_decisions_and_status_arrive(mosquitto, subscriber_factory, make_decision):
    sub = subscriber_factory(mosquitto.port, [TOPIC, f"{TOPIC}/status"])
    sink = open_sink(f"mqtt://127.0.0.1:{mosquitto.port}/{TOPIC}?qos=1", SinkOptions(queue=64))
    assert wait_until(lambda: sub.payloads(f"{TOPIC}/status") == [b"online"], 10)
    for i in range(10):
        sink.submit(make_decision(i, "NOK" if i % 3 == 0 else "OK"))
    assert wait_until(lambda: len(sub.frames()) >= 10, 10)
    report = sink.close(timeout=5)
    assert sorted(set(sub.frames())) == list(range(10))
    assert report["sent"] == 10 and report["failed"] == report["dropped"] == report["unsent"] == 0
    assert wait_until(lambda: sub.payloads(f"{TOPIC}/status")[-1:] == [b"offline"], 5)
    first = json.loads(next(p for t, p in sub.messages if t == TOPIC))
    assert first["schema"] == SCHEMA and first["verdict"] == "NOK"


class Link:
    """A TCP forwarder on loopback between the sink and the broker: `cut()` is a network outage
    for the sink alone (the listener goes and every connection through it is closed), `restore()`
    brings it back on the same port. The test subscriber talks to the broker directly."""

    def __init__(self, target: int) -> None:
        import socket

        self.socket = socket
        self.target, self.port = target, free_port()
        self.conns: list = []
        self.server = None
        self.restore()

    def restore(self) -> None:
        self.server = self.socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server) -> None:
        while True:
            try:
                client, _ = server.accept()
                upstream = self.socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        self.server.close()
        for c in self.conns:
            try:
                c.shutdown(self.socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()


def test_broker_crash_never_blocks_submit_and_delivery_resumes(mosquitto, subscriber_factory, make_decision):
    """The broker crashes; decisions keep coming; what was queued during the outage arrives soon
    after the broker is back (not 30 s later, and not thrown away after a few retries)."""
    link = Link(mosquitto.port)
    sink = open_sink(f"mqtt://127.0.0.1:{link.port}/{TOPIC}?qos=1", QUICK)  # queue 8, 2 retries of <= 0.2 s
    sub = subscriber_factory(mosquitto.port, [TOPIC])
    sink.submit(make_decision(0))
    assert wait_until(lambda: 0 in sub.frames(), 10)

    link.cut()
    mosquitto.kill()
    slowest = 0.0
    for i in range(1, 51):  # the line keeps producing decisions while the broker is gone
        start = time.perf_counter()
        sink.submit(make_decision(i))
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 0.05, f"a submit took {slowest * 1000:.1f} ms while the broker was down"
    time.sleep(6.0)  # an outage far longer than the retries of a decision (2 x <= 0.2 s), long enough for paho to back off
    assert sink.stats()["failed"] == 0 and sink.stats()["dropped"] >= 50 - QUICK.queue - 1  # the newest kept

    subscriptions = sub.subscriptions
    mosquitto.start()  # same port
    assert wait_until(lambda: sub.subscriptions > subscriptions, 15), "test subscriber did not come back"
    link.restore()
    back = time.monotonic()
    outage = set(range(51 - QUICK.queue, 51))  # the newest 8, queued during the outage
    assert wait_until(lambda: outage <= set(sub.frames()), 10), f"queued during the outage, never arrived: {sorted(outage - set(sub.frames()))}"
    assert time.monotonic() - back < 4.0, "the sink took longer than its 2 s reconnect cap to deliver"
    report = sink.close(timeout=5)
    assert report["failed"] == 0 and report["unsent"] == 0
    assert report["sent"] + report["dropped"] == 51
    link.cut()


def test_last_will_marks_a_crashed_runtime_offline(mosquitto, subscriber_factory, tmp_path):
    sub = subscriber_factory(mosquitto.port, [f"{TOPIC}/status"])
    script = tmp_path / "runtime.py"
    script.write_text(
        "import time\nfrom edgefreq.runtime.sinks import open_sink\n"
        f"open_sink('mqtt://127.0.0.1:{mosquitto.port}/{TOPIC}')\ntime.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, str(script)])
    try:
        assert wait_until(lambda: sub.payloads(f"{TOPIC}/status")[-1:] == [b"online"], 15)
    finally:
        child.kill()
        child.wait(5)
    assert wait_until(lambda: sub.payloads(f"{TOPIC}/status")[-1:] == [b"offline"], 10)


def make_certificates(folder: Path) -> dict[str, Path]:
    openssl = require_binary("openssl", "openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=edgefreq test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return {name: folder / f"{name}" for name in ("ca.pem", "server.pem", "server.key")}


def test_tls_and_credentials_from_the_environment(mosquitto_factory, subscriber_factory, make_decision, tmp_path, monkeypatch, caplog):
    certs = make_certificates(tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run([require_binary("mosquitto_passwd", "mosquitto"), "-b", "-c", str(passwd), "line", "s3cret"], check=True)
    broker = mosquitto_factory([
        f"cafile {certs['ca.pem']}", f"certfile {certs['server.pem']}", f"keyfile {certs['server.key']}",
        "allow_anonymous false", f"password_file {passwd}",
    ])
    sub = subscriber_factory(broker.port, [TOPIC], tls_ca=str(certs["ca.pem"]), login=("line", "s3cret"))
    monkeypatch.setenv("EDGEFREQ_MQTT_CA", str(certs["ca.pem"]))
    monkeypatch.setenv("EDGEFREQ_MQTT_USERNAME", "line")
    monkeypatch.setenv("EDGEFREQ_MQTT_PASSWORD", "s3cret")
    sink = open_sink(f"mqtts://127.0.0.1:{broker.port}/{TOPIC}", QUICK)
    sink.submit(make_decision(1))
    assert wait_until(lambda: sub.frames() == [1], 10)
    assert sink.close(timeout=5)["sent"] == 1

    monkeypatch.setenv("EDGEFREQ_MQTT_PASSWORD", "wrong")
    with caplog.at_level(logging.WARNING, logger="edgefreq.sinks"):
        sink = open_sink(f"mqtts://127.0.0.1:{broker.port}/{TOPIC}", SinkOptions(retries=1, backoff_s=1.0))
        sink.submit(make_decision(2))
        assert wait_until(lambda: sink.stats()["failed"] == 1, 10)
        sink.close(timeout=1)
    assert "refused" in caplog.text and sub.frames() == [1]

    monkeypatch.setenv("EDGEFREQ_MQTT_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(UserError, match="missing.pem is not a file"):
        open_sink(f"mqtts://127.0.0.1:{broker.port}/{TOPIC}")
