"""The operator's view (`edgefreq run --http`): endpoints, metrics, feedback, access, slow clients,
and the page in a real browser (Debian's headless Chromium driven by Playwright, no browser download).

A real line (the embedded model on the synthetic line through ONNX Runtime) runs in a thread with
the web side on a free loopback port; requests go over real sockets."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("aiohttp")
requests = pytest.importorskip("requests")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from conftest import free_port, require_binary, skip_or_fail, wait_until  # noqa: E402
from edgefreq.cli import main  # noqa: E402
from edgefreq.runtime.backends import open_backend  # noqa: E402
from edgefreq.runtime.capture import Capture  # noqa: E402
from edgefreq.runtime.backends import EMBEDDED  # noqa: E402
from edgefreq.runtime.inspector import Inspector  # noqa: E402
from edgefreq.runtime.loop import run_line  # noqa: E402
from edgefreq.runtime.record import LATENCY_STAGES  # noqa: E402
from edgefreq.runtime.service import LineService  # noqa: E402
from edgefreq.runtime.sinks import open_sink  # noqa: E402
from edgefreq.runtime.sources import SourceOptions, open_source  # noqa: E402
from edgefreq.runtime.web.app import is_loopback, make_app  # noqa: E402

TOKEN = "s3cret-token"


def service_args(**changes) -> argparse.Namespace:
    values = dict(http="127.0.0.1:0", http_public=False, http_cert=None, http_key=None, feedback=None, gallery=24, ready_within=10.0)
    values.update(changes)
    return argparse.Namespace(**values)


class Line:
    """A running line with its service; `stop()` ends the line, `close()` the service too."""

    def __init__(self, service: LineService, source: str, options: SourceOptions, sinks: list) -> None:
        self.service = service
        self.backend = open_backend(EMBEDDED, threads=1)
        self.inspector = Inspector(self.backend)
        self.capture = Capture(open_source(source, options), options)
        self.sinks = sinks
        service.ready(self.inspector, self.capture, sinks, source)
        self.stop_event = threading.Event()
        self.summary = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.summary = run_line(self.capture, self.inspector, self.sinks, self.stop_event, on_inspection=self.service.observer(None))

    @property
    def url(self) -> str:
        return self.service.server.url

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kw)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)

    def close(self) -> None:
        self.stop()
        self.service.close()
        self.backend.close()


@pytest.fixture
def start_line(tmp_path: Path):
    lines: list[Line] = []

    def start(environ=None, source="synthetic://", rate=40.0, loop=1, **changes) -> Line:
        service = LineService(service_args(**changes), {} if environ is None else environ)
        line = Line(service, source, SourceOptions(rate=rate, max_frames=0, loop=loop), [open_sink(str(tmp_path / f"out{len(lines)}.jsonl"))])
        lines.append(line)
        return line

    yield start
    for line in lines:
        line.close()


def nok_in_gallery(line: Line, n: int = 1) -> bool:
    return len(line.get("/api/gallery").json()["parts"]) >= n


def test_endpoints_report_the_line(start_line) -> None:
    line = start_line()
    assert line.get("/healthz").json() == {"alive": True}
    assert wait_until(lambda: line.get("/api/status").json()["frames"] >= 30, 30)
    assert wait_until(lambda: nok_in_gallery(line), 60), "the synthetic line's defects never showed in the gallery"
    ready = line.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"], ready.text
    first = line.get("/api/frame.jpg")
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[2] == 3
    assert wait_until(lambda: int(line.get("/api/frame.jpg").headers["X-Frame-Id"]) > int(first.headers["X-Frame-Id"]), 10), "the live frame did not change"
    line.stop()  # the line has ended; the server still answers until the service closes

    status = line.get("/api/status").json()
    assert status["frames"] == line.summary.frames and status["ok"] == line.summary.ok and status["nok"] == line.summary.nok
    assert status["yield"] == pytest.approx(status["ok"] / status["frames"], abs=1e-4)
    assert status["engine"] == line.inspector.engine and status["threshold"] == line.inspector.threshold
    assert status["latency_ms"]["total"]["p50"] > 0 and status["latency_ms"]["total"]["p99"] >= status["latency_ms"]["total"]["p50"]
    assert status["sinks"][line.sinks[0].name]["sent"] == status["frames"]
    line.service.status.detach()  # what service.close() does first, before the server stops
    not_ready = line.get("/readyz")
    assert not_ready.status_code == 503 and "the line has ended" in not_ready.json()["not_ready"]

    families = {f.name: f for f in text_string_to_metric_families(line.get("/metrics").text)}
    verdicts = {s.labels["verdict"]: s.value for s in families["edgefreq_frames"].samples if s.name.endswith("_total")}
    assert verdicts == {"OK": status["ok"], "NOK": status["nok"]}
    counts = {s.labels["stage"]: s.value for s in families["edgefreq_latency_seconds"].samples if s.name.endswith("_count")}
    assert counts["total"] == status["frames"] and set(counts) == set(LATENCY_STAGES)
    latency_sum = next(s.value for s in families["edgefreq_latency_seconds"].samples if s.name.endswith("_sum") and s.labels["stage"] == "total")
    assert 0 < latency_sum / status["frames"] < 1.0  # seconds, not milliseconds
    score = families["edgefreq_score_normalized"].samples
    above = status["frames"] - next(s.value for s in score if s.labels.get("le") == "1")
    assert next(s.value for s in score if s.name.endswith("_count")) == status["frames"]
    assert above == status["nok"]  # NOK exactly when the score is above the calibrated threshold (1 normalized)
    sent = {s.labels["sink"]: s.value for s in families["edgefreq_sink_sent"].samples}
    assert sent == {line.sinks[0].name: status["frames"]}
    assert next(iter(families["edgefreq_engine_info"].samples)).labels["engine"] == line.inspector.engine

    parts = line.get("/api/gallery").json()["parts"]
    assert parts and all(p["record"]["verdict"] == "NOK" for p in parts) and len(parts) <= status["nok"]
    assert [p["id"] for p in parts] == sorted((p["id"] for p in parts), reverse=True)  # newest first
    picture = line.get(f"/api/gallery/{parts[0]['id']}.jpg")
    assert picture.status_code == 200 and cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR) is not None
    assert line.get("/api/gallery/999999999.jpg").status_code == 404

    etag = line.get("/api/frame.jpg").headers["ETag"]
    assert line.get("/api/frame.jpg", headers={"If-None-Match": etag}).status_code == 304
    page = line.get("/")
    assert page.status_code == 200 and 'id="live"' in page.text and line.get("/static/app.js").status_code == 200


def test_the_gallery_keeps_the_newest_nok_parts_within_its_caps(make_decision) -> None:
    from edgefreq.runtime.web.state import LineState

    def inspection(i: int, verdict: str, side: int = 100):
        image = np.zeros((side, side, 3), np.uint8)
        return SimpleNamespace(decision=make_decision(i, verdict), frame=SimpleNamespace(image=image), amap=None, view=image, error=None)

    state = LineState(gallery=3)
    for i in range(10):
        state.observe(inspection(i, "NOK" if i % 2 else "OK"))
    assert [p.record["frame_id"] for p in state.gallery()] == [9, 7, 5] and [p.id for p in state.gallery()] == [10, 8, 6]
    snap = state.snapshot()
    assert (snap.frames, snap.ok, snap.nok, snap.last_frame_id, snap.last_decision) == (10, 5, 5, 9, 10)
    frameless = inspection(10, "NOK")
    frameless.decision = replace(make_decision(0, "NOK", score=float("nan"), score_norm=float("nan")), frame_id=None)  # as trigger.missed_part
    frameless.frame.image = frameless.view = None
    state.observe(frameless)  # a triggered part no frame came for: kept, shown without an image
    assert state.gallery()[0].id == 11 and state.snapshot().last_frame_id is None
    by_bytes = LineState(gallery=100, gallery_mb=0.1)  # 30 kB a frame: three fit in 0.1 MB
    for i in range(10):
        by_bytes.observe(inspection(i, "NOK"))
    assert [p.record["frame_id"] for p in by_bytes.gallery()] == [9, 8, 7]


def test_not_ready_before_the_engine_and_when_a_sink_fails(tmp_path: Path) -> None:
    service = LineService(service_args(ready_within=2.0), {})
    try:
        url = service.server.url
        assert requests.get(url + "/healthz", timeout=5).status_code == 200  # alive while the engine loads
        body = requests.get(url + "/readyz", timeout=5).json()
        assert "the engine is not loaded yet" in body["not_ready"]
        failing = SimpleNamespace(name="webhook", stats=lambda: {"sent": 0, "failed": 0, "retries": next(grow), "dropped": 0, "queued": 3})
        grow = iter(range(1, 10**6))
        service.status.attach(SimpleNamespace(threshold=1.0), None, [failing], "test://")
        assert "sink webhook is failing" in requests.get(url + "/readyz", timeout=5).json()["not_ready"]
    finally:
        service.close()


def test_feedback_files_the_part_in_the_mvtec_layout(start_line, tmp_path: Path) -> None:
    folder = tmp_path / "feedback"
    line = start_line(environ={"EDGEFREQ_HTTP_TOKEN": TOKEN}, feedback=folder)
    assert wait_until(lambda: nok_in_gallery(line, 2), 60)
    parts = line.get("/api/gallery").json()["parts"]
    good, bad = parts[0], parts[1]
    post = lambda body, token=TOKEN: requests.post(line.url + "/api/feedback", json=body, timeout=10,
                                                   headers={"Authorization": f"Bearer {token}"} if token else {})
    assert post({"id": good["id"], "kind": "good"}, token=None).status_code == 401
    assert post({"id": good["id"], "kind": "good"}, token="wrong").status_code == 401
    assert not folder.joinpath("train").exists()

    answer = post({"id": good["id"], "kind": "good"})
    assert answer.status_code == 200, answer.text
    image_path = Path(answer.json()["path"])
    assert image_path.parent == folder / "train" / "good" and image_path.suffix == ".png"
    written = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, line.service.state.part(good["id"]).inspection.frame.image)  # the full frame, lossless
    record = json.loads(image_path.with_suffix(".json").read_text())
    assert record["record"] == good["record"] and record["feedback"]["kind"] == "good"

    defect = post({"id": bad["id"], "kind": "defect", "label": "scratch"})
    assert defect.status_code == 200 and Path(defect.json()["path"]).parent == folder / "test" / "scratch"
    moved = post({"id": good["id"], "kind": "defect"})  # the operator changes their mind: the latest answer counts
    assert Path(moved.json()["path"]).parent == folder / "test" / "defect"
    assert not image_path.exists() and not image_path.with_suffix(".json").exists()

    assert post({"id": bad["id"], "kind": "defect", "label": "../etc"}).status_code == 400
    assert post({"id": bad["id"], "kind": "maybe"}).status_code == 400
    assert post({"id": 10**9, "kind": "good"}).status_code == 404
    assert requests.post(line.url + "/api/feedback", data="nonsense", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 400
    assert sorted(p.relative_to(folder).parts[:2] for p in folder.rglob("*.png")) == [("test", "defect"), ("test", "scratch")]


def test_operator_actions_are_off_without_a_token(start_line) -> None:
    line = start_line()
    assert wait_until(lambda: nok_in_gallery(line), 60)
    part = line.get("/api/gallery").json()["parts"][0]
    answer = requests.post(line.url + "/api/feedback", json={"id": part["id"], "kind": "good"}, timeout=10)
    assert answer.status_code == 403 and "EDGEFREQ_HTTP_TOKEN" in answer.json()["error"]


@pytest.mark.parametrize("peer, token, path, allowed", [
    ("127.0.0.1", None, "/api/status", True),
    ("::1", None, "/metrics", True),
    ("::ffff:127.0.0.1", None, "/", True),
    ("10.1.2.3", None, "/api/status", False),
    ("10.1.2.3", None, "/metrics", False),
    ("10.1.2.3", TOKEN, "/api/status", True),
    ("10.1.2.3", "wrong", "/api/frame.jpg", False),
    ("10.1.2.3", None, "/healthz", True),
    ("10.1.2.3", None, "/readyz", True),
])
def test_viewing_is_open_on_loopback_only(peer, token, path, allowed) -> None:
    from aiohttp.test_utils import make_mocked_request

    app = make_app(mock.Mock(vmax=1.0), None, TOKEN, None)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (peer, 4242) if key == "peername" else default
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = make_mocked_request("GET", path, headers=headers, transport=transport, app=app)

    async def handler(request):
        return "served"

    import asyncio

    result = asyncio.run(app.middlewares[0](request, handler))
    assert (result == "served") == allowed
    if not allowed:
        assert result.status == 401
    assert is_loopback(peer) == peer.endswith("127.0.0.1") or peer == "::1"


def test_a_client_that_stops_reading_is_dropped_and_the_line_goes_on(start_line) -> None:
    """An image far larger than the socket buffers (16 MB; loopback's send buffer tops out at 4 MB)
    to a client with a tiny receive buffer that never reads: disconnected after the send timeout,
    while other clients are served and the line goes on."""
    line = start_line(rate=20.0)
    assert wait_until(lambda: line.get("/api/status").json()["frames"] >= 2, 30)
    with mock.patch("edgefreq.runtime.web.render.jpeg", return_value=b"\xff" * 16_000_000):
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", line.service.server.port))
        stalled.sendall(b"GET /api/frame.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        frames_before = line.get("/api/status").json()["frames"]
        start = time.monotonic()
        assert wait_until(lambda: line.get("/api/status").json()["http_clients_dropped"] == 1, 15), "the stalled client was never dropped"
        waited = time.monotonic() - start
        status = line.get("/api/status").json()  # another client is served meanwhile
    stalled.settimeout(5)
    received = 0
    try:
        while chunk := stalled.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    stalled.close()
    assert received < 16_000_000  # the connection was cut, not finished
    assert 4.0 < waited < 12.0  # the send timeout is 5 s
    assert status["frames"] > frames_before + 50  # the line went on at 20 fps


def test_cli_serves_while_the_line_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefreq", "run", "--rate", "20", "--max-frames", "80", "--http", f"127.0.0.1:{port}",
         "--sink", str(tmp_path / "out.jsonl"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def answered() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/api/status", timeout=2).json()["frames"] > 0
            except requests.ConnectionError:
                return False

        assert wait_until(answered, 60, every=0.2), "the --http server never answered"
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    with pytest.raises(requests.ConnectionError):  # the server stops with the line
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.parametrize("argv, env, message", [
    (["--http", "0.0.0.0:8080"], {}, "--http-public"),
    (["--http", "0.0.0.0:8080", "--http-public"], {}, "--http-public needs EDGEFREQ_HTTP_TOKEN"),
    (["--http", "127.0.0.1:8080", "--feedback", "FOLDER"], {}, "--feedback needs EDGEFREQ_HTTP_TOKEN"),
    (["--feedback", "FOLDER"], {"EDGEFREQ_HTTP_TOKEN": TOKEN}, "--feedback needs --http"),
    (["--http", "nonsense"], {}, "give HOST:PORT"),
    (["--http", "127.0.0.1:8080", "--http-cert", "cert.pem"], {}, "both --http-cert and --http-key"),
    (["--http", "127.0.0.1:BUSY"], {}, "cannot listen there"),
])
def test_cli_refuses_in_one_line(argv, env, message, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("EDGEFREQ_HTTP_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        argv = [a.replace("FOLDER", str(tmp_path / "fb")).replace("BUSY", str(busy.getsockname()[1])) for a in argv]
        assert main(["run", *argv, "--sink", str(tmp_path / "never.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "never.jsonl").exists()  # refused before the line started


def test_tls_with_cert_files(start_line, tmp_path: Path) -> None:
    import subprocess

    require_binary("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    line = start_line(http_cert=cert, http_key=key)
    assert line.url.startswith("https://")
    assert requests.get(line.url + "/healthz", timeout=10, verify=str(cert)).json() == {"alive": True}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(line.url + "/healthz", timeout=10)  # not a CA the client trusts


# -- the page in a real browser ---------------------------------------------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def need(what: str, found: object) -> None:
    if not found:
        skip_or_fail(what)


@pytest.fixture
def browser(tmp_path: Path):
    chromium = shutil.which("chromium")
    need("chromium is not installed (apt-get install chromium)", chromium)
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        need("playwright is not installed (pip install 'edgefreq[dev]')", False)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, args=CHROMIUM_ARGS, headless=True, viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


def test_the_page_lives_and_files_feedback(browser, start_line, tmp_path: Path) -> None:
    folder = tmp_path / "feedback"
    line = start_line(environ={"EDGEFREQ_HTTP_TOKEN": "tok"}, feedback=folder, rate=15.0)
    page = browser.new_page()
    page.goto(line.url + "/")
    page.wait_for_function("document.getElementById('live').dataset.frameId !== ''", timeout=20000)
    first = int(page.get_attribute("#live", "data-frame-id"))
    page.wait_for_function(f"Number(document.getElementById('live').dataset.frameId) > {first}", timeout=20000)
    assert page.evaluate("document.getElementById('live').naturalWidth") > 0
    page.wait_for_function("document.getElementById('engine').textContent.includes('@')", timeout=10000)
    assert line.inspector.engine in page.inner_text("#engine")
    assert int(page.inner_text("#frames")) > 0

    page.fill("#token", "tok")
    page.dispatch_event("#token", "change")
    card = page.wait_for_selector(".part", timeout=60000)
    frame_id = int(card.get_attribute("data-frame-id"))
    card.query_selector("button.defect").click()
    page.wait_for_selector(".part .result.filed", timeout=10000)
    assert wait_until(lambda: any(folder.glob(f"test/defect/*frame{frame_id:08d}.png")), 5), list(folder.rglob("*"))
    assert any(folder.glob(f"test/defect/*frame{frame_id:08d}.json"))
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
