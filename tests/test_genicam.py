"""GenICam source: URI options and conversions (pure), then a real GigE Vision camera simulator.

The simulator is Aravis's `arv-fake-gv-camera-0.8` (apt-get install aravis-tools) on 127.0.0.1,
started and stopped by the `simulator` fixture; without it, or without PyGObject + Aravis, those
tests skip (EDGEFREQ_REQUIRE_SERVERS=1 makes them fail). Its diagonal test pattern is
C[(x + y + frame_id) % 255]: Mono8 gives the ramp itself, colour formats a jet colour map of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerProcess, require_binary, skip_or_fail, wait_until

from edgefreq.cli import main
from edgefreq.errors import UserError
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.backends import EMBEDDED
from edgefreq.runtime.sources import SourceOptions, open_source
from edgefreq.runtime.sources.genicam import INSTALL, FrameGaps, to_image

SERIAL = "EF01"
DEVICE = f"Aravis-Fake-{SERIAL}"
URI = f"genicam://{DEVICE}"


# ---------------------------------------------------------------------- pure: no camera needed
@pytest.mark.parametrize(
    "query, message",
    [
        ("?shutter=5", "unknown option 'shutter'"),
        ("?pixel_format=Mono12", "pixel_format 'Mono12' is not supported"),
        ("?trigger=line1", "trigger must be one of free, software, hardware"),
        ("?trigger=software&trigger_source=Line1", "trigger_source is for trigger=hardware"),
        ("?trigger_activation=FallingEdge", "trigger_activation is for trigger=hardware"),
        ("?roi=0,0,64", "roi must be X,Y,W,H"),
        ("?roi=0,0,0,64", "width and height must be at least 1"),
        ("?roi=a,b,c,d", "roi must be X,Y,W,H"),
        ("?exposure=fast", "exposure must be a number or auto"),
        ("?gain=-1", "gain must be >= 0"),
        ("?buffers=1", "option buffers='1' must be between 2 and 1024"),
    ],
)
def test_bad_options_are_one_line_errors(query: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        open_source(f"genicam://{query}")
    assert "\n" not in str(err.value)


def test_without_aravis_the_error_names_the_packages(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "gi", None)  # import gi -> ImportError
    with pytest.raises(UserError) as err:
        open_source("genicam://")
    assert str(err.value) == INSTALL and "gir1.2-aravis-0.8" in INSTALL and "edgefreq[genicam]" in INSTALL
    assert main(["cameras"]) == 2
    assert capsys.readouterr().err.strip() == f"edgefreq cameras: error: {INSTALL}"


def _mosaic(bgr: np.ndarray, tile: str) -> np.ndarray:
    """A Bayer raw image as the GenICam PFNC defines `tile` (e.g. RGGB: R at (0,0), B at (1,1))."""
    channel = {"B": 0, "G": 1, "R": 2}
    raw = np.empty(bgr.shape[:2], np.uint8)
    for k, colour in enumerate(tile):
        dy, dx = divmod(k, 2)
        raw[dy::2, dx::2] = bgr[dy::2, dx::2, channel[colour]]
    return raw


@pytest.mark.parametrize("fmt, tile", [("BayerRG8", "RGGB"), ("BayerGR8", "GRBG"), ("BayerGB8", "GBRG"), ("BayerBG8", "BGGR")])
def test_bayer_formats_demosaic_to_bgr(fmt: str, tile: str) -> None:
    bgr = np.zeros((32, 48, 3), np.uint8)
    bgr[:, :16] = (200, 40, 10)  # blue, red, then green blocks: a swapped pattern shows at once
    bgr[:, 16:32] = (10, 40, 200)
    bgr[:, 32:] = (20, 180, 30)
    out = to_image(_mosaic(bgr, tile).tobytes(), 48, 32, 0, fmt)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    for x0 in (0, 16, 32):  # inside each block, away from the edges demosaicing blurs
        block = out[4:-4, x0 + 4 : x0 + 12].reshape(-1, 3).astype(int)
        assert np.abs(block - bgr[0, x0].astype(int)).max() <= 2, (fmt, x0, block.mean(0))


def test_rgb_mono_and_row_padding() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    padded = np.concatenate([rgb.reshape(5, 21), np.full((5, 3), 99, np.uint8)], axis=1)  # 3 padding bytes a row
    assert np.array_equal(to_image(padded.tobytes(), 7, 5, 3, "RGB8"), rgb[:, :, ::-1])
    assert np.array_equal(to_image(padded.tobytes(), 7, 5, 3, "BGR8"), rgb)
    mono = np.arange(35, dtype=np.uint8).reshape(5, 7)
    image = to_image(mono.tobytes(), 7, 5, 0, "Mono8")
    assert np.array_equal(image, mono) and image.flags.writeable


@pytest.mark.parametrize(
    "ids, missing",
    [
        ([1, 2, 3, 4], 0),
        ([1, 3, 4], 1),
        ([1, 5], 3),
        ([1, 3, 2, 4], 0),  # 2 came late, after 3: not lost
        ([65534, 65535, 1, 2], 0),  # 16-bit GigE Vision block ids wrap to 1
        ([65534, 2], 2),  # 65535 and 1 lost across the wrap
        ([5, 5, 6], 0),
        ([70000, 70002], 1),  # 64-bit ids (GigE Vision 2, USB3 Vision) do not wrap at 16 bits
    ],
)
def test_frame_id_gaps_count_lost_frames(ids: list[int], missing: int) -> None:
    gaps = FrameGaps()
    for frame_id in ids:
        gaps.add(frame_id)
    assert gaps.missing == missing


# ---------------------------------------------------------------------- the simulator
class Simulator(ServerProcess):
    """arv-fake-gv-camera-0.8 on 127.0.0.1 (GigE Vision control port 3956): ready once Aravis opens the
    camera; `start(lost_per_mille)` restarts it with that packet loss, `kill()` crashes it."""

    def __init__(self, binary: str, log: Path) -> None:
        super().__init__("the GigE Vision simulator on 127.0.0.1", [], log, self.found, timeout=15.0, every=0.1)
        self.binary = binary

    def start(self, lost_per_mille: float = 0) -> None:
        self.args = [self.binary, "-i", "127.0.0.1", "-s", SERIAL, "-r", str(lost_per_mille)]
        super().start()

    @staticmethod
    def found() -> bool:
        from gi.repository import Aravis, GLib

        try:
            Aravis.Camera.new(DEVICE)
            return True
        except GLib.Error:
            return False


def _require_aravis() -> None:
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis  # noqa: F401
    except (ImportError, ValueError):
        skip_or_fail("PyGObject with Aravis 0.8 is not installed (" + INSTALL + ")")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory):
    binary = require_binary("arv-fake-gv-camera-0.8", "aravis-tools")
    _require_aravis()
    sim = Simulator(binary, tmp_path_factory.mktemp("gvsim") / "simulator.log")
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def fresh(simulator: Simulator) -> Simulator:
    """The simulator restarted: factory settings, no packet loss."""
    simulator.start()
    return simulator


def _read(source, n: int, limit: float = 10.0) -> list[np.ndarray]:
    frames, deadline = [], time.monotonic() + limit
    while len(frames) < n and time.monotonic() < deadline:
        image = source.read()
        if image is not None:
            frames.append(image)
    return frames


def _ramp_shift(reference: np.ndarray, image: np.ndarray) -> tuple[int, float]:
    """(d, mean error) for the d with image(x, y) closest to reference(x + d, y): both are C[(x + y + id) % 255]."""
    h, w = reference.shape[:2]
    ref = reference[:, : w - 255].astype(int)
    errors = [np.abs(image[:, d : d + w - 255].astype(int) - ref).mean() for d in range(255)]
    return int(np.argmin(errors)), float(min(errors))


def test_frames_arrive_as_the_test_pattern(fresh: Simulator) -> None:
    with open_source(URI + "?pixel_format=Mono8", SourceOptions(fps=50)) as source:
        _read(source, 1)  # Aravis sizes the socket buffer when the first frame arrives: that one may be cut
        lost = source.lost()
        frames = _read(source, 5)
        assert len(frames) == 5
        assert source.lost() == lost  # none lost once streaming
    for image in frames:
        assert image.shape == (512, 512) and image.dtype == np.uint8
        step = (image[:, 1:].astype(int) - image[:, :-1]) % 255  # the ramp: +1 a column, wrapping at 255
        assert (step == 1).mean() > 0.99
        assert np.array_equal(image[1:, :-1], image[:-1, 1:])  # constant along anti-diagonals


def test_pixel_formats_convert(fresh: Simulator) -> None:
    """RGB8 is the reference; the Bayer formats demosaic to the same colours, the ROI is read out."""
    with open_source(URI + "?pixel_format=RGB8", SourceOptions()) as source:
        (reference,) = _read(source, 1)
    assert reference.shape == (512, 512, 3)
    # the simulator writes its BayerRG8 and BayerBG8 tiles swapped (arvfakecamera.c puts B at (0,0)
    # for RG and R for BG, against PFNC); GR and GB it writes as the standard says.
    for fmt in ("BayerGR8", "BayerGB8"):
        with open_source(f"{URI}?pixel_format={fmt}", SourceOptions()) as source:
            (image,) = _read(source, 1)
        assert image.shape == (512, 512, 3)
        _, error = _ramp_shift(reference, image)
        assert error < 6, (fmt, error)
        _, swapped = _ramp_shift(reference, image[:, :, ::-1].copy())
        assert swapped > 3 * error, (fmt, error, swapped)
    with open_source(URI + "?pixel_format=Mono8&roi=64,32,256,128", SourceOptions()) as source:
        (roi,) = _read(source, 1)
    assert roi.shape == (128, 256)
    with open_source(URI + "?pixel_format=Mono8", SourceOptions(width=320, height=200)) as source:
        (sized,) = _read(source, 1)
    assert sized.shape == (200, 320)


def test_camera_errors_are_one_line(fresh: Simulator) -> None:
    cases = [
        ("genicam://NoSuchCamera", SourceOptions(), "no GenICam camera 'NoSuchCamera' found"),
        (URI + "?pixel_format=BGR8", SourceOptions(), "does not offer pixel_format BGR8"),
        (URI + "?exposure=1", SourceOptions(), "exposure 1 us is outside this camera's range 10 to"),
        (URI + "?roi=0,0,4096,64", SourceOptions(), "does not fit the 2048x2048 sensor"),
        (URI, SourceOptions(fps=5000), "frame rate 5000 fps is outside"),
        (URI + "?trigger=software", SourceOptions(fps=10), "--fps is for a free-running camera"),
        (URI + "?trigger=hardware", SourceOptions(), "trigger source 'Line1' not offered by this camera \\(it has Line0, Software\\)"),
        (URI + "?roi=0,0,64,64", SourceOptions(width=64, height=64), "either as roi= or as --resolution"),
    ]
    for uri, options, message in cases:
        with pytest.raises(UserError, match=message) as err:
            open_source(uri, options)
        assert "\n" not in str(err.value)


def test_software_trigger_gives_exactly_one_frame(fresh: Simulator) -> None:
    with open_source(URI + "?pixel_format=Mono8&roi=0,0,256,256&trigger=software", SourceOptions(timeout=0.5)) as source:
        assert source.read() is None and source.waiting()
        for _ in range(3):
            source.software_trigger()
            assert len(_read(source, 1, limit=2.0)) == 1
            assert source.read() is None and source.waiting()  # one trigger, one frame, then quiet
        assert source.lost() == 0
    with open_source(URI + "?pixel_format=Mono8", SourceOptions()) as free, pytest.raises(UserError, match="needs trigger=software"):
        free.software_trigger()


def test_a_triggered_camera_between_parts_is_not_a_stall(fresh: Simulator) -> None:
    """Quiet for 4x the timeout, then 3 PLC triggers from another thread: 3 frames, no stall, no reconnect."""
    options = SourceOptions(timeout=0.5, reconnect_initial=0.1, reconnect_max=0.5)
    source = open_source(URI + "?pixel_format=Mono8&roi=0,0,256,256&trigger=software", options)
    with Capture(source, options) as capture:
        time.sleep(2.0)
        for _ in range(3):
            source.software_trigger()
            time.sleep(0.2)
        assert wait_until(lambda: capture.stats().captured == 3, 3.0)
        time.sleep(0.5)
        stats = capture.stats()
    assert (stats.captured, stats.stalls, stats.reconnects, stats.corrupt, stats.errors) == (3, 0, 0, 0, 0), stats


def test_hardware_trigger_waits_on_its_line(fresh: Simulator) -> None:
    """TriggerMode On, TriggerSource Line0, the activation asked for; the simulator never pulses the
    line (its GigE Vision loop sends frames free-running or on a software trigger only), so the
    source waits: no frame, waiting(), no error."""
    uri = URI + "?pixel_format=Mono8&trigger=hardware&trigger_source=Line0&trigger_activation=RisingEdge"
    with open_source(uri, SourceOptions(timeout=0.3)) as source:
        assert "hardware trigger on Line0 (RisingEdge)" in source.description
        assert "512x512 at (0, 0) Mono8" in source.description
        assert source.read() is None and source.waiting()
    with pytest.raises(UserError, match="trigger_activation 'FallingEdge' not offered \\(choose from RisingEdge\\)"):
        open_source(URI + "?trigger=hardware&trigger_source=Line0&trigger_activation=FallingEdge")
    with open_source(URI + "?pixel_format=Mono8&exposure=2000&gain=3", SourceOptions(fps=40)) as source:
        assert source.description.endswith("free-running at 40 fps, exposure 2000 us, gain 3 dB")


@pytest.mark.parametrize("query", ["?pixel_format=Mono8", "?pixel_format=Mono8&roi=0,0,256,256&trigger=software"])
def test_killing_and_restarting_the_simulator_reconnects(fresh: Simulator, query: str) -> None:
    options = SourceOptions(timeout=1.0, reconnect_initial=0.2, reconnect_max=1.0)
    source = open_source(URI + query, options)
    triggered = "trigger" in query
    stop = threading.Event()

    def plc() -> None:  # a trigger every 50 ms; refused while the camera is away
        while not stop.wait(0.05):
            try:
                source.software_trigger()
            except UserError:
                pass

    with Capture(source, options) as capture:
        pulses = threading.Thread(target=plc, daemon=True)
        if triggered:
            pulses.start()
        assert wait_until(lambda: capture.stats().captured >= 3, 5.0)
        fresh.kill()
        assert wait_until(lambda: capture.stats().errors + capture.stats().stalls >= 1, 15.0), capture.stats()
        before = capture.stats().captured
        fresh.start()
        assert wait_until(lambda: capture.stats().reconnects >= 1 and capture.stats().captured >= before + 3, 20.0), capture.stats()
        stop.set()


def test_lost_and_incomplete_buffers_reach_the_records_and_the_summary(simulator: Simulator, tmp_path: Path) -> None:
    """The simulator drops 3 packets in 1000: incomplete frames, counted in `dropped` and `lost`."""
    from edgefreq.runtime.backends import open_backend
    from edgefreq.runtime.inspector import Inspector
    from edgefreq.runtime.loop import run_line
    from edgefreq.runtime.record import Decision
    from edgefreq.runtime.sinks import open_sink

    simulator.start(lost_per_mille=3)
    options = SourceOptions(max_frames=40, timeout=2.0)
    records = tmp_path / "decisions.jsonl"
    capture = Capture(open_source(URI + "?pixel_format=Mono8", options), options)
    summary = run_line(capture, Inspector(open_backend(EMBEDDED)), [open_sink(str(records))], threading.Event())
    written = [Decision.from_json(line) for line in records.read_text().splitlines()]
    simulator.start()
    assert summary.frames == len(written) == 40 and summary.lost > 0, summary.to_dict()
    assert summary.to_dict()["lost"] == summary.lost and f"lost by the source {summary.lost}" in summary.text()
    assert written[-1].dropped > 0 and max(d.dropped for d in written) <= summary.dropped + summary.lost


def test_cameras_lists_the_simulator(fresh: Simulator, capsys) -> None:
    assert main(["cameras", "--json"]) == 0
    cameras = json.loads(capsys.readouterr().out)
    (camera,) = [c for c in cameras if c["id"] == DEVICE]
    assert camera["uri"] == URI and camera["protocol"] == "GigEVision" and camera["address"] == "127.0.0.1"
    assert main(["cameras"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["uri", "vendor", "model", "serial_nbr", "protocol", "address"]
    assert any(line.split()[0] == URI for line in table[1:])


def test_a_frame_through_the_line(fresh: Simulator, tmp_path: Path) -> None:
    """`edgefreq run --source genicam://...` decides every frame, gray included."""
    out = tmp_path / "d.jsonl"
    rc = main(["run", "--source", URI + "?pixel_format=Mono8", "--max-frames", "5", "--sink", str(out), "--quiet"])
    written = out.read_text().splitlines()
    assert rc == 0 and len(written) == 5
    assert all(json.loads(line)["score"] is not None for line in written)
