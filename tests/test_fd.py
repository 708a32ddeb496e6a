"""FD: the torch reference and the OpenCV implementation against cv2.pyrUp(cv2.pyrDown(x))."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess, decouple, frame_to_bands, preprocess_frame
from edgefreq.kernels.pyramid import check_size

SIZES = [(7, 9), (16, 16), (33, 20), (31, 31), (64, 45)]


def smoothed(x: np.ndarray, depth: int) -> np.ndarray:
    """G at `depth`, recursively from the definition: up(smoothed(down(x), depth - 1)) at x's size."""
    if depth == 0:
        return x
    return cv2.pyrUp(smoothed(cv2.pyrDown(x), depth - 1), dstsize=(x.shape[1], x.shape[0])).reshape(x.shape)


def cv2_bands(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """The bands by their definition, lowest first: G(L-1), then G(d-1) - G(d) up to the finest, img - G(1)."""
    return [smoothed(img, levels - 1)] + [smoothed(img, d - 1) - smoothed(img, d) for d in range(levels - 1, 0, -1)]


@pytest.mark.parametrize("impl", ["torch", "opencv"])
@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_decouple_matches_cv2(impl: str, levels: int, channels: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(hash((impl, levels, channels, size)) % 2**32)
    x = rng.uniform(-1, 1, (3, channels, *size)).astype(np.float32)
    bands = decouple(torch.from_numpy(x), levels=levels, impl=impl)
    assert len(bands) == levels
    for n in range(x.shape[0]):
        ref = cv2_bands(np.ascontiguousarray(x[n].transpose(1, 2, 0)), levels)
        for b, r in zip(bands, ref):
            got = b[n].numpy().transpose(1, 2, 0).reshape(r.shape)
            assert np.abs(got - r).max() < 1e-4
    total = torch.stack(bands).sum(0)
    assert (total - torch.from_numpy(x)).abs().max() < 1e-5


def test_two_levels_is_the_papers_split() -> None:
    x = np.random.default_rng(0).random((33, 20), dtype=np.float32)
    low, high = decouple(torch.from_numpy(x)[None, None], levels=2, impl="torch")
    g = cv2.pyrUp(cv2.pyrDown(x), dstsize=(20, 33))
    assert np.abs(low[0, 0].numpy() - g).max() < 1e-6
    assert np.abs(high[0, 0].numpy() - (x - g)).max() < 1e-6


def test_one_level_is_the_image() -> None:
    x = torch.rand(2, 3, 8, 8)
    (only,) = decouple(x, levels=1)
    assert torch.equal(only, x)


def test_clip_high_keeps_the_positive_half() -> None:
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    signed = decouple(x, levels=2, impl="torch")
    clipped = decouple(x, levels=2, impl="torch", clip_high=True)
    assert torch.equal(clipped[0], signed[0])
    assert torch.equal(clipped[1], signed[1].clamp_min(0))
    assert (signed[1] < 0).any()


def test_minimum_sizes() -> None:
    assert check_size(3, 3, 2) == [(3, 3), (2, 2)]
    assert check_size(5, 5, 3)[-1] == (2, 2)
    for h, w, levels in [(2, 8, 2), (4, 9, 3), (8, 9, 4)]:
        with pytest.raises(UserError, match="too small"):
            decouple(torch.zeros(1, 1, h, w), levels=levels)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((1, 1, 8, 8), np.float32), "torch tensor"),
        (torch.zeros(1, 8, 8), "N x C x H x W"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "float"),
    ],
)
def test_bad_images(bad, match: str) -> None:
    with pytest.raises(UserError, match=match):
        decouple(bad)


def test_bad_levels_and_impl() -> None:
    x = torch.zeros(1, 1, 16, 16)
    with pytest.raises(UserError, match="levels"):
        decouple(x, levels=0)
    with pytest.raises(UserError, match="unknown FD implementation"):
        decouple(x, impl="cuda")


@pytest.mark.parametrize(("mode", "flag"), [("area", cv2.INTER_AREA), ("linear", cv2.INTER_LINEAR)])
def test_preprocess_definition_on_a_frame(mode: str, flag: int) -> None:
    """Spelled out: crop, float resize (area by default: antialiased), BGR->RGB, /255, normalize."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (41, 57, 3), dtype=np.uint8)
    spec = Preprocess(size=(20, 24), roi=(5, 3, 40, 30), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25), levels=2, resize=mode)
    crop = frame[3:33, 5:45].astype(np.float32)
    img = cv2.resize(crop, (24, 20), interpolation=flag)[:, :, ::-1] / 255.0
    want = ((img - np.array(spec.mean)) / np.array(spec.std)).transpose(2, 0, 1)
    assert np.abs(preprocess_frame(frame, spec) - want).max() < 1e-5


def test_gray_conversions() -> None:
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    gray_spec = Preprocess(size=(12, 10), channels=1, mean=(0.0,), std=(1.0,))
    want = cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2GRAY) / 255.0
    assert np.abs(preprocess_frame(bgr, gray_spec)[0] - want).max() < 1e-5
    gray = bgr[:, :, 0]
    rgb = preprocess_frame(gray, Preprocess(size=(12, 10), mean=(0, 0, 0), std=(1, 1, 1)))
    assert rgb.shape == (3, 12, 10) and np.array_equal(rgb[0], rgb[2])


@pytest.mark.parametrize("impl", ["opencv", "torch"])
def test_frame_to_bands_batch_and_single_agree(impl: str) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    spec = Preprocess(size=(16, 18), levels=3)
    batch = frame_to_bands(frames, spec, impl=impl)
    single = frame_to_bands(frames[1], spec, impl="opencv")
    assert [tuple(b.shape) for b in batch] == [(2, 3, 16, 18)] * 3
    for b, s in zip(batch, single):
        assert (b[1] - s[0]).abs().max() < 1e-4


@pytest.mark.parametrize(
    "frame, spec, match",
    [
        (np.zeros((10, 10, 3), np.float32), Preprocess(size=(8, 8)), "uint8"),
        (np.zeros((10, 10, 4), np.uint8), Preprocess(size=(8, 8)), "channel axis of 1 \\(gray\\) or 3"),
        (np.zeros((10, 10, 3), np.uint8), Preprocess(size=(8, 8), roi=(5, 5, 8, 8)), "does not fit"),
    ],
)
def test_bad_frames(frame, spec, match: str) -> None:
    with pytest.raises(UserError, match=match):
        frame_to_bands(frame, spec)


def test_bad_specs() -> None:
    with pytest.raises(UserError, match="roi"):
        Preprocess(roi=(0, 0, 0, 5))
    with pytest.raises(UserError, match="too small"):
        Preprocess(size=(4, 4), levels=3)
    with pytest.raises(UserError, match="channels"):
        Preprocess(channels=2)


def test_fd_cli_writes_viewable_bands(tmp_path) -> None:
    rng = np.random.default_rng(4)
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), rng.integers(0, 256, (37, 29, 3), dtype=np.uint8))
    out = tmp_path / "bands"
    proc = subprocess.run(
        [sys.executable, "-m", "edgefreq", "fd", str(image), "--levels", "3", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["part_0_low.png", "part_1_band1.png", "part_2_high.png"]
    assert cv2.imread(str(out / "part_2_high.png")).shape == (37, 29, 3)


def test_fd_cli_takes_the_size_as_wxh_and_the_roi_as_x_y_w_h(tmp_path) -> None:
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), np.random.default_rng(5).integers(0, 256, (37, 29, 3), dtype=np.uint8))
    for flags, shape in ((["--size", "24x16"], (16, 24, 3)), (["--roi", "3,5,20,12"], (12, 20, 3))):
        out = tmp_path / flags[0][2:]
        proc = subprocess.run([sys.executable, "-m", "edgefreq", "fd", str(image), *flags, "--out", str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert cv2.imread(str(out / "part_1_high.png")).shape == shape, flags  # width x height, left, top


def test_fd_cli_bad_input_is_one_line(tmp_path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    proc = subprocess.run(
        [sys.executable, "-m", "edgefreq", "fd", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "broken.png" in proc.stderr
    for flags, message in ((["--size", "32", "32"], "--size must be WIDTHxHEIGHT"), (["--roi", "0,0,8"], "--roi must be X,Y,W,H"),
                           (["--levels", "0"], "--levels must be at least 1")):
        proc = subprocess.run([sys.executable, "-m", "edgefreq", "fd", str(bad), *flags, "--out", str(tmp_path / "o")], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("mode", "flag"), [("area", cv2.INTER_AREA), ("linear", cv2.INTER_LINEAR)])
def test_resize_is_opencvs_own_code_on_every_platform(mode: str, flag: int) -> None:
    """x86 wheels resize floats with IPP (float64 coordinates); ARM and the Triton kernel use
    OpenCV's own code (float32 coordinates). preprocess_frame always uses the latter."""
    frame = np.random.default_rng(5).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    spec = Preprocess(size=(255, 257), mean=(0, 0, 0), std=(1, 1, 1), resize=mode)
    before = cv2.ipp.useIPP()
    got = preprocess_frame(frame, spec)
    assert cv2.ipp.useIPP() == before
    cv2.ipp.setUseIPP(False)
    try:
        want = cv2.resize(frame.astype(np.float32), (257, 255), interpolation=flag)[:, :, ::-1] / 255.0
    finally:
        cv2.ipp.setUseIPP(before)
    assert np.abs(got - want.transpose(2, 0, 1)).max() < 1e-6


@pytest.mark.parametrize(("src", "dst"), [((512, 512), (128, 128)), ((37, 53), (17, 29)), ((31, 49), (60, 61)),
                                          ((900, 900), (128, 128)), ((40, 30), (20, 60)), ((513, 100), (128, 100))])
@pytest.mark.parametrize(("mode", "flag"), [("area", cv2.INTER_AREA), ("linear", cv2.INTER_LINEAR)])
def test_resize_tables_are_opencvs_resize(src: tuple[int, int], dst: tuple[int, int], mode: str, flag: int) -> None:
    """The per-axis tap tables the Triton kernel reads reproduce cv2.resize (IPP off) on every
    element: cell averaging when downscaling, OpenCV's own 2-tap coefficients when any axis grows."""
    from edgefreq.kernels.resize import area_path, resize_image, resize_table

    img = np.random.default_rng(0).integers(0, 256, src).astype(np.float32)
    cells = area_path(src, dst)
    mats = []
    for n, d in zip(src, dst):
        index, weight = resize_table(n, d, 0, mode, cells)
        r = np.zeros((d, n))
        for k in range(index.shape[0]):
            np.add.at(r, (np.arange(d), index[k]), weight[k])
        mats.append(r)
    assert np.abs(mats[0] @ img @ mats[1].T - resize_image(img, dst, mode)).max() <= 1e-4 * 255
    assert np.abs(resize_image(img, dst, mode) - cv2.resize(img, dst[::-1], interpolation=flag)).max() <= 1e-2  # IPP or not


def test_area_resize_antialiases() -> None:
    """Thin white lines every 4th column, downscaled 4x: area keeps their mean (0.25 everywhere);
    linear samples between them and loses every line (0 everywhere): aliasing."""
    lines = ((np.indices((64, 64))[1] % 4 == 0) * 255).astype(np.uint8)
    area = preprocess_frame(lines, Preprocess(size=(16, 16), channels=1, mean=(0.0,), std=(1.0,)))
    linear = preprocess_frame(lines, Preprocess(size=(16, 16), channels=1, mean=(0.0,), std=(1.0,), resize="linear"))
    assert np.abs(area - 0.25).max() < 1e-6
    assert np.abs(linear).max() < 1e-6
