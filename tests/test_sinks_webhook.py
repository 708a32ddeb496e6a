"""Webhook sink against a local http.server on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port, wait_until

from edgefreq.runtime.sinks import SinkOptions, open_sink

pytest.importorskip("requests")

QUICK = SinkOptions(retries=3, backoff_s=0.02, backoff_max_s=0.05, timeout_s=1.0)


class Hook:
    """A loopback HTTP server answering POSTs with the next status of `statuses` (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = hook.statuses.pop(0) if hook.statuses else 200
                if status == 200:
                    hook.bodies.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?line=1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook_factory():
    hooks: list[Hook] = []

    def make(statuses=None) -> Hook:
        hooks.append(Hook(statuses))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()


def test_posts_each_decision(hook_factory, make_decision, monkeypatch):
    monkeypatch.setenv("EDGEFREQ_WEBHOOK_TOKEN", "t0ken")
    hook = hook_factory()
    sink = open_sink(hook.url, QUICK)
    for i in range(3):
        sink.submit(make_decision(i, "NOK"))
    report = sink.close(timeout=5)
    assert report["sent"] == 3 and [b["frame_id"] for b in hook.bodies] == [0, 1, 2]
    assert hook.headers[0]["Content-Type"] == "application/json"
    assert hook.headers[0]["Authorization"] == "Bearer t0ken"
    assert sink.name.endswith("/hook?…") and "line=1" not in sink.name  # a query may hold a secret: not logged


def test_server_errors_are_retried_client_errors_are_not(hook_factory, make_decision):
    hook = hook_factory([500, 503, 200, 404])
    sink = open_sink(hook.url, QUICK)
    sink.submit(make_decision(1))  # 500, 503, then 200
    sink.submit(make_decision(2))  # 404: retrying cannot help
    report = sink.close(timeout=5)
    assert [b["frame_id"] for b in hook.bodies] == [1]
    assert report["sent"] == 1 and report["retries"] == 2 and report["failed"] == 1


def test_dead_port_never_blocks_and_counts_failures(make_decision):
    sink = open_sink(f"http://127.0.0.1:{free_port()}/hook", QUICK)
    start = time.perf_counter()
    for i in range(3):
        sink.submit(make_decision(i))
    assert time.perf_counter() - start < 0.1
    report = sink.close(timeout=10)
    assert report["failed"] == 3 and report["retries"] == 3 * QUICK.retries and report["sent"] == 0


def test_a_query_string_secret_is_never_logged(make_decision, caplog):
    import logging

    url = f"http://127.0.0.1:{free_port()}/hook?key=S3CRET-TOKEN&line=3"
    with caplog.at_level(logging.INFO):
        sink = open_sink(url, QUICK)
        sink.submit(make_decision(0))
        assert wait_until(lambda: sink.stats()["failed"] == 1)
        report = sink.close(2.0)
    assert report["failed"] == 1
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "delivery failing" in messages and "S3CRET" not in messages and "S3CRET" not in sink.name
