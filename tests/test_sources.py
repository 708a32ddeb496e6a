"""Sources: the URI grammar end to end, file loops, clear errors for dead inputs, the synthetic line."""

from __future__ import annotations

import logging
import re
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefreq.config import from_dict
from edgefreq.errors import UserError
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sources import (
    DEFECT_KINDS,
    EndOfStream,
    SourceOptions,
    SyntheticLine,
    open_source,
)
from edgefreq.runtime.sources.camera import csi_pipeline
from edgefreq.runtime.uri import redact

N = 6  # frames in the test videos


def _levels(n: int) -> list[int]:
    return [20 + 35 * i for i in range(n)]


def _write_video(path: Path, fourcc: str) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    assert writer.isOpened(), f"cannot write {fourcc} test video"
    for level in _levels(N):
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path


def _read_all(source, limit: int = 1000) -> list[np.ndarray]:
    """Every frame up to the end of the stream (a finite source never times out: no None)."""
    frames = []
    while len(frames) < limit:
        try:
            image = source.read()
        except EndOfStream:
            break
        assert image is not None, "a finite source gave None: that means a timeout, not the end"
        frames.append(image)
    return frames


def _means(frames: list[np.ndarray]) -> list[int]:
    return [round(float(f.mean())) for f in frames]


def _close_to(means: list[int], levels: list[int]) -> bool:
    return len(means) == len(levels) and all(abs(m - v) <= 4 for m, v in zip(means, levels))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {"mp4": _write_video(root / "line.mp4", "mp4v"), "avi": _write_video(root / "line.avi", "MJPG")}


# ---------------------------------------------------------------- files
@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_video_file_plain_path_and_file_uri(videos: dict[str, Path], kind: str) -> None:
    for uri in (str(videos[kind]), f"file://{videos[kind]}"):
        with open_source(uri) as source:
            assert not source.is_live and source.uri == uri
            frames = _read_all(source)
        assert _close_to(_means(frames), _levels(N)), (uri, _means(frames))
        assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8


def test_video_loops_and_restarts(videos: dict[str, Path]) -> None:
    source = open_source(str(videos["avi"]), SourceOptions(loop=3))
    assert _close_to(_means(_read_all(source)), _levels(N) * 3)
    with pytest.raises(EndOfStream):  # the end stays the end
        source.read()
    source.reopen()
    assert _close_to(_means(_read_all(source)), _levels(N) * 3)
    source.close()


def test_loop_zero_is_forever(videos: dict[str, Path]) -> None:
    source = open_source(str(videos["mp4"]), SourceOptions(loop=0))
    frames = _read_all(source, limit=4 * N + 1)
    assert len(frames) == 4 * N + 1
    source.close()


def test_single_image_once_per_pass(tmp_path: Path) -> None:
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), np.full((20, 30, 3), 99, np.uint8))
    assert len(_read_all(open_source(str(path)))) == 1
    frames = _read_all(open_source(f"file://{path}", SourceOptions(loop=3)))
    assert len(frames) == 3 and frames[0].shape == (20, 30, 3)
    frames[0][:] = 0  # the consumer owns what it gets
    assert frames[1].max() == 99


def test_gray_image_stays_gray(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), np.full((20, 30), 7, np.uint8))
    image = open_source(str(path)).read()
    assert image.shape == (20, 30) and image.dtype == np.uint8


def test_folder_natural_order_loops_and_skips_unreadable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((16, 16, 3), i * 10, np.uint8))
    cv2.imwrite(str(tmp_path / "img5.JPG"), np.full((16, 16, 3), 50, np.uint8))
    (tmp_path / "img3.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="edgefreq"):
        frames = _read_all(open_source(str(tmp_path), SourceOptions(loop=2)))
    assert _close_to(_means(frames), [10, 20, 50, 100] * 2), _means(frames)
    assert any("img3.png" in r.getMessage() for r in caplog.records)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no images"):
        open_source(str(tmp_path))
    (tmp_path / "a.png").write_bytes(b"junk")
    once = open_source(f"file://{tmp_path}").read_sample()
    assert once.image is None and once.name == "a.png" and "not a readable image" in once.error
    source = open_source(f"file://{tmp_path}", SourceOptions(loop=0))  # forever over nothing readable: stop
    with pytest.raises(UserError, match="none of the 1 images"):
        source.read()


def test_every_file_of_a_folder_is_one_sample_named_after_it(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8), 9, np.uint8))
    (tmp_path / "bb.png").write_bytes(b"corrupt")
    source = open_source(str(tmp_path))
    first = source.read_sample()
    (tmp_path / "b.png").unlink()  # deleted after the folder was listed
    cv2.imwrite(str(tmp_path / "d.png"), np.full((8, 8), 9, np.uint8))  # arrives during the pass
    samples = [first]
    with pytest.raises(EndOfStream):
        while True:
            samples.append(source.read_sample())
    assert [s.name for s in samples] == ["a.png", "b.png", "bb.png", "c.png", "d.png"]
    assert [s.image is None for s in samples] == [False, True, True, False, False]
    assert "deleted" in samples[1].error and "not a readable image" in samples[2].error


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [("broken.mp4", b"x" * 500, "cannot decode"), ("broken.png", b"x" * 500, "cannot read"), ("empty.jpg", b"", "cannot read")],
)
def test_corrupt_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        open_source(str(path))


@pytest.mark.parametrize("uri", ["/no/such/video.mp4", "file:///no/such/folder", "", "file://", "ftp://host/x", "camera://x", "csi://left"])
def test_bad_uris(uri: str) -> None:
    with pytest.raises(UserError):
        open_source(uri)


def test_the_end_of_a_file_is_end_of_stream_on_every_finite_source(videos: dict[str, Path], tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8), 9, np.uint8))
    for uri in (str(videos["avi"]), str(tmp_path / "a.png"), str(tmp_path)):
        source = open_source(uri)
        assert len(_read_all(source)) >= 1
        with pytest.raises(EndOfStream):
            source.read_sample()


# ---------------------------------------------------------------- one grammar for inputs and outputs
@pytest.mark.parametrize(
    ("source", "sink", "problem"),
    [
        ("synthetic://?colour=red", "nokdir:///tmp/x?colour=red", r"unknown option 'colour' \(options here: "),
        ("synthetic://?seed=1&seed=2", "mqtt://broker/t?qos=1&qos=2", r"option '(seed|qos)' given twice$"),
        ("synthetic://?defect_rate=lots", "nokdir:///tmp/x?max_mb=lots", r"option \w+='lots' must be a number$"),
        ("ftp://host/x", "ftp://host/x", r"unknown kind of (input|output); use one of: "),
        ("file:///tmp/a#b", "mqtt://broker/t#b", r"'#' is not allowed"),
    ],
)
def test_inputs_and_outputs_share_parsing_and_wording(source: str, sink: str, problem: str) -> None:
    with pytest.raises(UserError) as got_source:
        open_source(source)
    with pytest.raises(UserError) as got_sink:
        open_sink(sink)
    for kind, uri, message in (("source", source, str(got_source.value)), ("sink", sink, str(got_sink.value))):
        assert re.match(f"{kind} {re.escape(repr(uri))}: {problem}", message), message


def test_file_locations_mean_the_same_on_both_sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """file:///absolute and file://relative (jetson-utils' reading), for a source and a sink alike."""
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("part.png", np.full((8, 8), 9, np.uint8))
    assert open_source("file://part.png").read().shape == (8, 8)
    assert open_source(f"file://{tmp_path}/part.png").read().shape == (8, 8)
    for uri in ("file://out.jsonl", f"file://{tmp_path}/abs.jsonl"):
        open_sink(uri).close()
    assert (tmp_path / "out.jsonl").exists() and (tmp_path / "abs.jsonl").exists()


def test_options_are_checked_with_one_wording() -> None:
    from edgefreq.runtime.sinks import SinkOptions

    with pytest.raises(UserError, match="^source option loop must be >= 0, got -1$"):
        SourceOptions(loop=-1)
    with pytest.raises(UserError, match="^sink option retries must be >= 0, got -1$"):
        SinkOptions(retries=-1)
    with pytest.raises(UserError, match="^source option timeout must be > 0, got 0$"):
        SourceOptions(timeout=0)
    with pytest.raises(UserError, match="^sink option timeout_s must be > 0, got 0$"):
        SinkOptions(timeout_s=0)


# ---------------------------------------------------------------- live sources that cannot open here
def _fails_fast(uri: str, options: SourceOptions | None = None, within: float = 5.0) -> str:
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        open_source(uri, options)
    assert time.monotonic() - start < within
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"source {redact(uri)!r}: ")
    return message


@pytest.mark.parametrize("uri", ["97", "camera://97"])
def test_camera_index_that_cannot_open(uri: str) -> None:
    assert "cannot open camera 97" in _fails_fast(uri)


def test_v4l2_missing_device() -> None:
    assert "no such device /dev/video97" in _fails_fast("v4l2:///dev/video97")
    assert "no device path" in _fails_fast("v4l2://")


def test_csi_without_jetson() -> None:
    assert "GStreamer" in _fails_fast("csi://0", SourceOptions(width=640, height=480, fps=30))


def test_csi_pipeline_string() -> None:
    text = csi_pipeline(1, 1920, 1080, 29.97)
    assert "sensor-id=1" in text and "width=1920, height=1080" in text and "framerate=2997/100" in text
    assert "framerate=30/1" in csi_pipeline(0, 1280, 720, 30)
    assert text.endswith("appsink drop=true max-buffers=1 sync=false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rtsp_closed_port() -> None:
    uri = f"rtsp://operator:hunter2@127.0.0.1:{_free_port()}/line1"
    message = _fails_fast(uri, SourceOptions(timeout=1.0))
    assert "cannot open the stream" in message and "hunter2" not in message and "operator:***@" in message


def test_rtsp_silent_server_honours_open_timeout() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        uri = f"rtsp://127.0.0.1:{server.getsockname()[1]}/line1"
        _fails_fast(uri, SourceOptions(timeout=0.5), within=8.0)


def test_redact_keeps_everything_but_the_password() -> None:
    assert redact("rtsp://cam.local:554/s") == "rtsp://cam.local:554/s"
    assert redact("rtsp://u:p@[::1]:554/s?x=1") == "rtsp://u:***@[::1]:554/s?x=1"


# ---------------------------------------------------------------- options
def test_source_options_validation() -> None:
    assert from_dict(SourceOptions, {"rate": 5, "loop": 0}).rate == 5.0
    with pytest.raises(UserError, match="unknown key 'roi'"):
        from_dict(SourceOptions, {"roi": [0, 0, 10, 10]})
    for bad in ({"timeout": 0}, {"loop": -1}, {"width": 640}, {"reconnect_initial": 5, "reconnect_max": 1}):
        with pytest.raises(UserError):
            from_dict(SourceOptions, bad)


# ---------------------------------------------------------------- synthetic line
def test_synthetic_uri_and_truth() -> None:
    source = open_source("synthetic://?seed=7&defect_rate=0.5&size=96x64")
    assert not source.is_live
    line = SyntheticLine((64, 96), seed=7, defect_rate=0.5)
    for i in range(6):
        sample = source.read_sample()
        image, truth = sample.image, sample.truth
        expected, expected_truth = line.frame(i)
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
        assert np.array_equal(image, expected) and truth == expected_truth
    source.reopen()
    assert np.array_equal(source.read(), line.frame(0)[0])


def test_synthetic_size_from_options_and_bad_queries() -> None:
    assert open_source("synthetic://", SourceOptions(width=80, height=48)).read().shape == (48, 80, 3)
    assert open_source("synthetic://").read().shape == (128, 128, 3)
    for uri in ("synthetic://?colour=red", "synthetic://?size=big", "synthetic://?defect_rate=2", "synthetic://?size=8x8", "synthetic://x"):
        with pytest.raises(UserError):
            open_source(uri)


def test_synthetic_is_deterministic_per_seed_and_index() -> None:
    a, b = SyntheticLine(seed=3, defect_rate=0.3), SyntheticLine(seed=3, defect_rate=0.3)
    for i in (0, 1, 57):
        image_a, truth_a = a.frame(i)
        image_b, truth_b = b.frame(i)
        assert np.array_equal(image_a, image_b) and truth_a == truth_b
    assert not np.array_equal(a.frame(0)[0], a.frame(1)[0])
    assert not np.array_equal(a.frame(0)[0], SyntheticLine(seed=4).frame(0)[0])


def test_synthetic_defect_rate_is_honoured() -> None:
    for rate in (0.0, 0.1, 0.5):
        line = SyntheticLine(seed=11, defect_rate=rate)
        kinds = [line.defect_kind(i) for i in range(2000)]
        observed = sum(k is not None for k in kinds) / len(kinds)
        assert abs(observed - rate) < 0.05, (rate, observed)
    always = SyntheticLine(seed=2, defect_rate=1.0)
    assert {always.defect_kind(i) for i in range(400)} == set(DEFECT_KINDS)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defects_visibly_change_the_part(kind: str) -> None:
    line = SyntheticLine(seed=5)
    for index in range(8):
        good, bad = line.render(index, None), line.render(index, kind)
        diff = np.abs(good.astype(np.int16) - bad.astype(np.int16)).max(axis=2)
        changed = int((diff > 30).sum())
        assert 6 <= changed < 0.03 * diff.size, (kind, index, changed)  # visible, yet a small local change
        small = [cv2.resize(x, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16) for x in (good, bad)]
        assert np.abs(small[0] - small[1]).max() > 20, (kind, index)  # still visible at model input


def test_synthetic_bad_arguments() -> None:
    for kwargs in ({"size": (16, 16)}, {"defect_rate": -0.1}, {"seed": -1}):
        with pytest.raises(UserError):
            SyntheticLine(**kwargs)
    with pytest.raises(UserError, match="unknown defect kind"):
        SyntheticLine().render(0, "crack")
