"""Gray frames on the line (mono cameras, magnetic tile, ELPV): gray frames into a gray model, and
gray <-> BGR both ways, for every CPU backend and batch size, through the inspector, `run` and `bench`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import export_tiny, train_tiny
from edgefreq.kernels import frame_to_bands
from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.frame import Frame
from edgefreq.runtime.inspector import Inspector, as_batch
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sources import SourceOptions, open_source
from edgefreq.runtime.sources.synthetic import SyntheticLine

pytest.importorskip("onnxruntime")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAGNETIC_TILE = DATA / "magnetic_tile" / "train" / "good"


def gray_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    line = SyntheticLine((64, 64), seed=seed, defect_rate=0.5)
    return [cv2.cvtColor(line.frame(i)[0], cv2.COLOR_BGR2GRAY) for i in range(n)]


def bgr_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    line = SyntheticLine((64, 64), seed=seed, defect_rate=0.5)
    return [line.frame(i)[0] for i in range(n)]


def make_run(root: Path, channels: int) -> tuple[Path, Path]:
    """A tiny model with `channels` input channels trained on synthetic frames: (run folder, .onnx)."""
    stats = "[0.5]" if channels == 1 else "[0.5, 0.5, 0.5]"
    run = train_tiny(root, gray_frames(20) if channels == 1 else bgr_frames(20),
                     [f"preprocess.channels={channels}", f"preprocess.mean={stats}", f"preprocess.std={stats}"])
    return run, export_tiny(run, root / f"tiny{channels}.onnx")


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory) -> tuple[Path, Path]:
    return make_run(tmp_path_factory.mktemp("gray"), 1)


@pytest.fixture(scope="module")
def color_model(tmp_path_factory) -> tuple[Path, Path]:
    return make_run(tmp_path_factory.mktemp("color"), 3)


def inspect(engine: Path, images: list[np.ndarray], batch: int) -> list:
    inspector = Inspector(open_backend(engine, device="cpu"))
    frames = [Frame(i, 0.0, image, "test://gray") for i, image in enumerate(images)]
    return [x for k in range(0, len(frames), batch) for x in inspector.inspect(frames[k : k + batch], 0)]


def scores(inspections: list) -> np.ndarray:
    assert [x.error for x in inspections] == [None] * len(inspections)
    return np.array([x.decision.score for x in inspections])


def test_a_batch_is_always_b_h_w_c():
    assert as_batch(gray_frames(3)).shape == (3, 64, 64, 1)
    assert as_batch(bgr_frames(2)).shape == (2, 64, 64, 3)
    from edgefreq.kernels import Preprocess

    spec = Preprocess(size=(32, 32), channels=1, mean=(0.5,), std=(0.5,))
    stacked = np.stack(gray_frames(3))  # B x H x W without a channel axis: ambiguous, refused
    with pytest.raises(Exception, match="channel axis"):
        frame_to_bands(stacked, spec)
    bands = frame_to_bands(as_batch(gray_frames(3)), spec)
    assert tuple(bands[0].shape) == (3, 1, 32, 32)


def scored(model: tuple[Path, Path], backend: str, images: list[np.ndarray], batch: int) -> np.ndarray:
    """The scores of IMAGES in batches of BATCH, from the run folder (torch) or the .onnx (onnxruntime) of MODEL."""
    run, onnx = model
    return scores(inspect(onnx if backend == "onnxruntime" else run, images, batch))


EVERY_BACKEND_AND_BATCH = pytest.mark.parametrize(("backend", "batch"), [(b, n) for b in ("onnxruntime", "torch") for n in (1, 4)])


@EVERY_BACKEND_AND_BATCH
def test_gray_frames_into_a_gray_model(gray_model, backend, batch):
    images = gray_frames(6)
    got = scored(gray_model, backend, images, batch)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, scored(gray_model, backend, images, 1), rtol=1e-5)  # batching changes nothing


@EVERY_BACKEND_AND_BATCH
def test_gray_frames_into_a_color_model_are_replicated(color_model, backend, batch):
    images = gray_frames(5)
    as_bgr = [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in images]
    # gray = BGR with three equal channels
    np.testing.assert_allclose(scored(color_model, backend, images, batch), scored(color_model, backend, as_bgr, batch), rtol=1e-5)


@EVERY_BACKEND_AND_BATCH
def test_bgr_frames_into_a_gray_model_are_converted(gray_model, backend, batch):
    images = bgr_frames(5)
    got = scored(gray_model, backend, images, batch)
    np.testing.assert_allclose(got, scored(gray_model, backend, images, 1), rtol=1e-5)
    # the conversion is 0.299 R + 0.587 G + 0.114 B, what cv2 does up to its uint8 rounding
    gray = [cv2.cvtColor(b, cv2.COLOR_BGR2GRAY) for b in images]
    np.testing.assert_allclose(got, scored(gray_model, backend, gray, batch), rtol=0.05)


def test_the_line_inspects_mixed_gray_and_color_frames(gray_model, tmp_path):
    _, onnx = gray_model
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(gray_frames(3) + bgr_frames(3)):
        cv2.imwrite(str(folder / f"{i:02d}.png"), image)
    sink = open_sink(str(tmp_path / "d.jsonl"))
    opts = SourceOptions()
    summary = run_line(Capture(open_source(str(folder), opts), opts), Inspector(open_backend(onnx)), [sink], threading.Event(), max_batch=4)
    decisions = [Decision.from_json(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert summary.frames == 6 and summary.not_inspected == 0
    assert all(np.isfinite(d.score) for d in decisions)


def cli(verb: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefreq", verb, *args], capture_output=True, text=True, timeout=180)


def test_run_and_bench_on_a_folder_of_gray_images(gray_model, tmp_path):
    _, onnx = gray_model
    folder = tmp_path / "gray"
    folder.mkdir()
    for i, image in enumerate(gray_frames(8)):
        cv2.imwrite(str(folder / f"{i:02d}.png"), image)
    out = tmp_path / "d.jsonl"
    proc = cli("run", "--engine", str(onnx), "--source", str(folder), "--sink", str(out), "--batch", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    decisions = [Decision.from_json(line) for line in out.read_text().splitlines()]
    assert len(decisions) == 8 and all(d.score is not None and np.isfinite(d.score) for d in decisions)
    proc = cli("bench", "--engine", str(onnx), "--source", str(folder), "--batches", "1,4", "--frames", "8", "--warmup", "1",
               "--quiet", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["frame_size"] == [64, 64] and [r["batch"] for r in report["runs"]] == [1, 4]


@pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason=f"{MAGNETIC_TILE} is absent (the real gray data set)")
@pytest.mark.parametrize("which", ["gray", "color"])
def test_real_magnetic_tile_images(gray_model, color_model, tmp_path, which):
    _, onnx = gray_model if which == "gray" else color_model
    out = tmp_path / "d.jsonl"
    proc = cli("run", "--engine", str(onnx), "--source", str(MAGNETIC_TILE), "--max-frames", "12", "--sink", str(out),
               "--batch", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    decisions = [Decision.from_json(line) for line in out.read_text().splitlines()]
    assert len(decisions) == 12 and all(np.isfinite(d.score) for d in decisions)
