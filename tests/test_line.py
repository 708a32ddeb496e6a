"""The line end to end: a real (tiny) engine through ONNX Runtime, files and the synthetic line,
a failing source, a frame it cannot inspect, a dead sink, SIGTERM, and a short soak."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import export_tiny, free_port, train_tiny
from edgefreq.errors import UserError
from edgefreq.export.sidecar import file_sha256
from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sources import SourceOptions, open_source
from edgefreq.runtime.sources.base import Source
from edgefreq.runtime.sources.synthetic import SyntheticLine

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Path:
    """A tiny OCR-GAN trained on synthetic good frames, calibrated, exported to ONNX."""
    root = tmp_path_factory.mktemp("line")
    return export_tiny(train_tiny(root), root / "tiny.onnx")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefreq", "run", *args], capture_output=True, text=True, timeout=timeout)


def records(path: Path) -> list[Decision]:
    return [Decision.from_json(line) for line in path.read_text().splitlines()]


def test_every_frame_of_a_folder_gets_one_decision(engine: Path, tmp_path: Path) -> None:
    line = SyntheticLine((64, 64), seed=3, defect_rate=0.5)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:02d}.png"), line.frame(i)[0])
    out, summary = tmp_path / "d.jsonl", tmp_path / "s.json"
    proc = run_cli("--engine", str(engine), "--source", str(folder), "--sink", str(out), "--summary", str(summary), "--batch", "4")
    assert proc.returncode == 0, proc.stderr
    decisions = records(out)
    assert [d.frame_id for d in decisions] == list(range(6))
    s = json.loads(summary.read_text())
    assert s["frames"] == 6 == s["ok"] + s["nok"] and s["dropped"] == 0
    assert all(d.engine == f"tiny.onnx@{file_sha256(engine)[:12]}" and d.threshold > 0 for d in decisions)  # NAME@HASH
    assert all(d.threshold_source == "calibration" for d in decisions)
    assert "6 frames" in proc.stderr


def test_a_frame_it_cannot_inspect_is_a_failsafe_nok(engine: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    big = SyntheticLine((64, 64)).frame(0)[0]
    cv2.imwrite(str(folder / "0.png"), big)
    cv2.imwrite(str(folder / "1.png"), big[:20, :20])  # smaller than the ROI below
    cv2.imwrite(str(folder / "2.png"), big)
    out, summary = tmp_path / "d.jsonl", tmp_path / "s.json"
    proc = run_cli("--engine", str(engine), "--source", str(folder), "--roi", "0,0,48,48", "--sink", str(out), "--summary", str(summary))
    assert proc.returncode == 0, proc.stderr
    d = records(out)
    assert [x.verdict for x in d][1] == "NOK" and np.isnan(d[1].score)
    assert np.isfinite(d[0].score) and np.isfinite(d[2].score)
    assert json.loads(summary.read_text())["not_inspected"] == 1
    assert "does not fit" in proc.stderr


def test_an_unreadable_file_of_a_folder_is_a_counted_failsafe_nok_named_after_it(engine: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    line = SyntheticLine((64, 64))
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(folder / name), line.frame(0)[0])
    (folder / "b.png").write_bytes(b"half a png")
    out, summary = tmp_path / "d.jsonl", tmp_path / "s.json"
    proc = run_cli("--engine", str(engine), "--source", str(folder), "--sink", str(out), "--summary", str(summary),
                   "--sink", f"nokdir://{tmp_path / 'nok'}", "--batch", "4")
    assert proc.returncode == 0, proc.stderr
    d = records(out)
    assert [x.source for x in d] == [f"{folder}/{n}" for n in ("a.png", "b.png", "c.png")]
    assert d[1].verdict == "NOK" and np.isnan(d[1].score) and np.isfinite(d[0].score) and np.isfinite(d[2].score)
    s = json.loads(summary.read_text())
    assert s["frames"] == 3 and s["not_inspected"] == 1 and s["sinks"][f"nokdir://{tmp_path / 'nok'}"]["failed"] == 0
    assert "b.png: not a readable image" in proc.stderr


class Breaks(Source):
    """A finite source whose file breaks after `good` frames."""

    uri, is_live = "test://breaks", False

    def __init__(self, good: int) -> None:
        self.n, self.good, self.line = 0, good, SyntheticLine((64, 64))

    def read(self):
        if self.n == self.good:
            raise UserError("test://breaks: read error after 5 frames")
        self.n += 1
        return self.line.frame(self.n)[0]

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass


def test_a_source_that_fails_midstream_keeps_what_was_decided(engine: Path, tmp_path: Path) -> None:
    backend = open_backend(engine)
    sink = open_sink(str(tmp_path / "d.jsonl"))
    capture = Capture(Breaks(5), SourceOptions())
    summary = run_line(capture, Inspector(backend), [sink], threading.Event())
    assert summary.frames == 5 and "read error" in summary.source_error
    assert len(records(tmp_path / "d.jsonl")) == 5


def test_a_dead_sink_never_stalls_the_line(engine: Path, tmp_path: Path) -> None:
    """A webhook peer that accepts connections and never answers (each POST waits its full 1 s
    timeout, retried): a sink delivering in the line's thread would take minutes for 40 frames."""
    import socket

    from edgefreq.runtime.sinks import SinkOptions

    backend = open_backend(engine)
    silent = socket.create_server(("127.0.0.1", 0), backlog=128)  # never accept()ed: the kernel completes the handshake
    try:
        dead = open_sink(f"http://127.0.0.1:{silent.getsockname()[1]}/hook", SinkOptions(timeout_s=1.0, retries=1, backoff_s=0.1))
        good = open_sink(str(tmp_path / "d.jsonl"))
        opts = SourceOptions(max_frames=40)
        decided = []
        capture = Capture(open_source("synthetic://?size=64x64", opts), opts)
        start = time.perf_counter()
        summary = run_line(capture, Inspector(backend), [dead, good], threading.Event(), sink_timeout=1.0,
                           on_inspection=lambda i: decided.append(time.perf_counter() - start))
    finally:
        silent.close()
    assert len(decided) == 40 and decided[-1] < 10, f"the line took {decided[-1]:.1f} s to decide 40 frames"
    assert len(records(tmp_path / "d.jsonl")) == summary.frames == 40
    report = summary.sinks[dead.name]
    assert report["sent"] == 0 and report["failed"] + report["dropped"] + report["unsent"] == summary.frames


def test_sigterm_finishes_flushes_and_exits_zero(engine: Path, tmp_path: Path) -> None:
    out, summary = tmp_path / "d.jsonl", tmp_path / "s.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgefreq", "run", "--engine", str(engine), "--source", "synthetic://?size=64x64",
         "--rate", "100", "--sink", str(out), "--summary", str(summary)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 10):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    s = json.loads(summary.read_text())
    assert len(records(out)) == s["frames"] >= 10
    assert s["frames"] == s["ok"] + s["nok"] and s["captured"] == s["frames"] + s["dropped"]
    assert "latency ms p50/p99" in err


def test_soak_accounts_for_every_frame_and_memory_stays_flat(engine: Path, tmp_path: Path) -> None:
    backend = open_backend(engine)
    inspector = Inspector(backend)
    sink = open_sink(str(tmp_path / "d.jsonl"))
    rss = []

    def watch(inspection) -> None:
        if inspection.decision.frame_id % 250 == 0:
            rss.append(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE"))

    opts = SourceOptions(max_frames=1500)
    # 192 x 192 frames (110 KB each): keeping every frame and its map would grow by ~170 MiB, far past the limit
    capture = Capture(open_source("synthetic://?size=192x192&defect_rate=0.2", opts), opts, capacity=4)
    summary = run_line(capture, inspector, [sink], threading.Event(), on_inspection=watch)
    assert summary.frames == summary.ok + summary.nok
    assert summary.captured == 1500 == summary.frames + summary.dropped
    assert len(records(tmp_path / "d.jsonl")) == summary.frames
    assert summary.confusion["tp"] + summary.confusion["fn"] > 0  # the synthetic line's truth is carried
    growth = (rss[-1] - rss[1]) / 2**20  # after warm-up
    assert growth < 25, f"resident memory grew {growth:.1f} MiB over the soak"


def copy_engine(engine: Path, folder: Path, edit=None) -> Path:
    """A copy of the engine and its sidecar, the sidecar edited by `edit(data)` as a user would by hand."""
    import yaml

    folder.mkdir(exist_ok=True)
    (folder / engine.name).write_bytes(engine.read_bytes())
    data = yaml.safe_load(engine.with_suffix(".yaml").read_text())
    if edit is not None:
        edit(data)
    (folder / engine.with_suffix(".yaml").name).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / engine.name


def test_a_hand_edited_threshold_is_refused_and_an_override_is_recorded(engine: Path, tmp_path: Path) -> None:
    for value in (float("inf"), 1e30):
        edited = copy_engine(engine, tmp_path / str(value), lambda d: d["calibration"].update(threshold=value))
        out = tmp_path / f"{value}.jsonl"
        proc = run_cli("--engine", str(edited), "--source", "synthetic://?size=64x64", "--max-frames", "5", "--sink", str(out))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "edited by hand" in proc.stderr or "not a finite number" in proc.stderr
        assert not out.exists() or not out.read_text()
    out = tmp_path / "override.jsonl"
    proc = run_cli("--engine", str(engine), "--source", "synthetic://?size=64x64&defect_rate=1", "--max-frames", "6", "--rate", "0",
                   "--threshold", "1e30", "--sink", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "overrides the calibrated" in proc.stderr
    decisions = records(out)
    assert len(decisions) == 6 and all(d.threshold == 1e30 and d.threshold_source == "override" and d.verdict == "OK" for d in decisions)
    proc = run_cli("--engine", str(engine), "--threshold", "inf", "--max-frames", "2")
    assert proc.returncode == 2 and "finite" in proc.stderr


def test_an_engine_that_fails_on_one_frame_costs_only_that_frame(engine: Path, tmp_path: Path) -> None:
    backend = open_backend(engine)
    real, calls = backend._infer, []

    def flaky(bands):
        calls.append(len(bands[0]))
        if len(calls) == 3:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : boom")
        return real(bands)

    backend._infer = flaky
    sink = open_sink(str(tmp_path / "d.jsonl"))
    opts = SourceOptions(max_frames=8)
    summary = run_line(Capture(open_source("synthetic://?size=64x64", opts), opts), Inspector(backend), [sink], threading.Event())
    decisions = records(tmp_path / "d.jsonl")
    assert summary.frames == 8 == len(decisions) and summary.not_inspected == 1
    assert decisions[2].verdict == "NOK" and np.isnan(decisions[2].score)
    assert all(np.isfinite(d.score) for k, d in enumerate(decisions) if k != 2)


def test_a_sidecar_from_another_engine_is_refused_in_one_line(engine: Path, tmp_path: Path) -> None:
    edited = copy_engine(engine, tmp_path / "e", lambda d: d["preprocess"].update(size=[64, 64]))
    proc = run_cli("--engine", str(edited), "--source", "synthetic://?size=64x64", "--max-frames", "3")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "does not match its sidecar" in proc.stderr


def test_exit_status_says_when_a_sink_came_up_short_or_nothing_was_inspected(engine: Path, tmp_path: Path) -> None:

    args = ("--engine", str(engine), "--source", "synthetic://?size=64x64", "--max-frames", "10", "--rate", "0")
    proc = run_cli(*args, "--sink", f"http://127.0.0.1:{free_port()}/hook", "--sink", str(tmp_path / "d.jsonl"))
    assert proc.returncode == 3 and "not every decision was delivered" in proc.stderr, proc.stderr
    assert len(records(tmp_path / "d.jsonl")) == 10  # the other sink delivered everything
    closed = subprocess.Popen([sys.executable, "-m", "edgefreq", "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    closed.stdout.close()  # nobody reads stdout: every write fails
    _, err = closed.communicate(timeout=120)
    assert closed.returncode == 3, err
    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), SyntheticLine((64, 64)).frame(i)[0])
    proc = run_cli("--engine", str(engine), "--source", str(folder), "--roi", "0,0,200,200", "--sink", str(tmp_path / "n.jsonl"))
    assert proc.returncode == 4 and "no frame could be inspected" in proc.stderr, proc.stderr
    assert len(records(tmp_path / "n.jsonl")) == 3  # each still decided: NOK
    proc = run_cli(*args, "--sink", str(tmp_path / "ok.jsonl"))
    assert proc.returncode == 0, proc.stderr


def test_a_summary_that_cannot_be_written_is_refused_before_the_line_starts(engine: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    for where in (tmp_path / "missing" / "s.json", tmp_path):
        proc = run_cli("--engine", str(engine), "--source", "synthetic://?size=64x64", "--max-frames", "5", "--sink", str(out),
                       "--summary", str(where))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--summary" in proc.stderr, proc.stderr
        assert not out.exists()


def test_cli_errors(engine: Path, tmp_path: Path) -> None:
    proc = run_cli("--engine", str(tmp_path / "none.onnx"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("--engine", str(engine), "--camera", "7", "--timeout", "0.5")
    assert proc.returncode == 2 and "camera" in proc.stderr.lower() and len(proc.stderr.strip().splitlines()) <= 2
    proc = run_cli("--engine", str(engine), "--sink", "display://")  # no display here (or a headless OpenCV)
    assert proc.returncode == 2 and "sink 'display://': needs " in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_latency_percentiles_use_fixed_memory_and_stay_within_half_a_percent() -> None:
    from edgefreq.runtime.loop import LatencyHistogram

    h = LatencyHistogram()
    size = h.counts.nbytes
    samples = np.random.default_rng(0).lognormal(1.0, 1.0, 50_000)
    for v in samples:
        h.add(float(v))
    assert h.counts.nbytes == size and h.n == len(samples)
    for q in (50, 99):
        assert abs(h.percentile(q) / np.percentile(samples, q) - 1) < 0.005


def test_the_summary_says_which_decisions_went_without_their_images() -> None:
    from edgefreq.runtime.loop import Summary

    summary = Summary(sinks={"nokdir:///nok": {"sent": 30, "images_dropped": 12, "dropped": 0, "failed": 0, "unsent": 0}})
    assert "sink nokdir:///nok: sent 30 (12 without their images)" in summary.text()
