"""The fused Triton FD kernel against OpenCV: under TRITON_INTERPRET=1 on the CPU (tiny images,
big blocks: a few program instances per case), compiled for CUDA targets offline, and on a GPU
at camera sizes when there is one."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

INTERPRET = not torch.cuda.is_available()  # no GPU: run the kernel in Triton's interpreter
_saved = os.environ.get("TRITON_INTERPRET")
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is decorated, i.e. at import
pytest.importorskip("triton")

import cv2  # noqa: E402

from edgefreq.errors import UserError  # noqa: E402
from edgefreq.kernels import Preprocess, decouple, frame_to_bands  # noqa: E402
from edgefreq.kernels import fd_triton, register  # noqa: E402
from edgefreq.kernels.fd_opencv import decouple_chw  # noqa: E402
from edgefreq.kernels.fd_torch import smoothed  # noqa: E402
from edgefreq.kernels.operators import smoothing_operators, windowed  # noqa: E402
from edgefreq.kernels.preprocess import frame_to_bands_opencv, preprocess_frame  # noqa: E402

if INTERPRET and not fd_triton.INTERPRETED:  # imported earlier without the variable: decorate again
    fd_triton = importlib.reload(fd_triton)
if _saved is None:  # leave the environment of later test modules as it was
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _saved


@pytest.fixture(autouse=True)
def _interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The public API (kernels.decouple / frame_to_bands, impl='triton') accepts CPU tensors only with the variable."""
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BIG = 64  # one tile covers every test image up to 64 x 64: a handful of program instances


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output buffers start as NaN, so an element the kernel never writes cannot pass."""
    empty = torch.empty

    def nan_empty(*args, **kwargs):
        out = empty(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty", nan_empty)


def _opencv_bands(frames: np.ndarray, spec: Preprocess) -> list[np.ndarray]:
    per_frame = [frame_to_bands_opencv(f[:, :, 0] if f.shape[2] == 1 else f, spec) for f in frames]
    return [np.stack([b[k] for b in per_frame]) for k in range(spec.levels)]


def _assert_close(bands: list[torch.Tensor], reference: list[np.ndarray], atol: float) -> None:
    assert len(bands) == len(reference)
    for k, (b, r) in enumerate(zip(bands, reference)):
        b = b.cpu().numpy()
        assert b.shape == r.shape and b.dtype == np.float32
        assert np.isfinite(b).all(), f"band {k}: elements never written"
        err = float(np.abs(b - r).max())
        assert err <= atol, f"band {k}: max abs error {err:.3g} > {atol}"


def test_operators_are_the_reference() -> None:
    """P X Q^T reproduces the torch reference in float64, and the windows hold every nonzero."""
    rng = np.random.default_rng(0)
    for h, w, levels in [(19, 23, 2), (20, 16, 3), (33, 40, 4), (33, 35, 6)]:
        x = rng.standard_normal((h, w))
        p, q = smoothing_operators(h, levels), smoothing_operators(w, levels)
        for k, g in enumerate(smoothed(torch.from_numpy(x)[None, None], levels)):
            np.testing.assert_allclose(p[k] @ x @ q[k].T, g[0, 0].numpy(), rtol=0, atol=1e-12)
        for block in (16, 32):
            win = windowed(h, levels, block)
            full = np.zeros_like(p, dtype=np.float32)
            for k in range(levels - 1):
                for i in range(h):
                    s = win.starts[k, i // block]
                    span = min(win.values.shape[2], h - s)
                    full[k, i, s : s + span] = win.values[k, i, :span]
            np.testing.assert_array_equal(full, p.astype(np.float32))
            assert win.values.shape[2] == int(win.chunks.max()) * win.chunk


@pytest.mark.parametrize(
    ("shape", "levels"),
    [((2, 1, 19, 23), 2), ((2, 3, 20, 16), 3), ((1, 3, 33, 40), 3), ((3, 1, 16, 17), 2), ((2, 1, 9, 10), 1),
     ((1, 1, 33, 35), 6)],
)
def test_decouple_matches_opencv(poisoned: None, shape: tuple[int, ...], levels: int) -> None:
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32))
    bands = fd_triton.decouple_triton(x.to(DEVICE), levels, block=BIG)
    per_image = [decouple_chw(img.numpy(), levels) for img in x]
    _assert_close(bands, [np.stack([b[k] for b in per_image]) for k in range(levels)], 1e-4)
    total = torch.stack(bands).sum(0).cpu()
    assert float((total - x).abs().max()) <= 1e-5


def test_decouple_clip_strides_and_public_api(poisoned: None) -> None:
    """clip_high, a non-contiguous view, a float64 input and decouple(impl='triton') agree with the reference."""
    x = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (2, 3, 21, 18)))
    view = x.permute(0, 1, 3, 2)  # 2 x 3 x 18 x 21, not contiguous
    bands = fd_triton.decouple_triton(view.to(DEVICE), 3, clip_high=True, block=BIG)
    assert all(b.dtype == torch.float64 for b in bands)
    per_image = [decouple_chw(img.float().numpy(), 3, clip_high=True) for img in view]
    _assert_close([b.float() for b in bands], [np.stack([b[k] for b in per_image]) for k in range(3)], 1e-4)
    assert float(bands[-1].min()) >= 0
    public = decouple(view.float().to(DEVICE), 3, impl="triton")
    unclipped = [np.stack([b[k] for b in [decouple_chw(i.float().numpy(), 3) for i in view]]) for k in range(3)]
    _assert_close(public, unclipped, 1e-4)


FRAME_CASES = [  # (frame B x H x W x C, spec): gray and BGR, odd sizes, ROI, down- and up-scaling
    ((2, 45, 61, 3), Preprocess(size=(23, 31), levels=2)),
    ((2, 45, 61, 3), Preprocess(size=(40, 38), levels=3, channels=1, mean=(0.4,), std=(0.3,))),
    ((2, 21, 17, 1), Preprocess(size=(40, 38), levels=3)),
    ((1, 21, 17, 1), Preprocess(size=(33, 35), levels=2, channels=1, mean=(0.4,), std=(0.3,), roi=(3, 2, 9, 15))),
    ((2, 50, 70, 3), Preprocess(size=(40, 40), levels=3, roi=(5, 7, 41, 33), clip_high=True)),
    ((1, 64, 48, 3), Preprocess(size=(32, 24), levels=2, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))),
    ((1, 64, 48, 3), Preprocess(size=(16, 12), levels=2)),  # 4x area: 4 x 4 taps per pixel
    ((2, 45, 61, 3), Preprocess(size=(23, 31), levels=2, resize="linear")),
    ((1, 21, 17, 1), Preprocess(size=(33, 35), levels=2, channels=1, mean=(0.4,), std=(0.3,), roi=(3, 2, 9, 15), resize="linear")),
]


@pytest.mark.parametrize(("shape", "spec"), FRAME_CASES)
def test_frame_to_bands_matches_opencv(poisoned: None, shape: tuple[int, ...], spec: Preprocess) -> None:
    frames = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    bands = fd_triton.frame_to_bands_triton(torch.from_numpy(frames).to(DEVICE), spec, block=BIG)
    _assert_close(bands, _opencv_bands(frames, spec), 1e-4)


def test_preprocessing_is_opencvs_resize_exactly(poisoned: None) -> None:
    """Levels 1 = the preprocessed image: OpenCV's own INTER_AREA / INTER_LINEAR (IPP off; IPP takes
    the source coordinate in float64 instead of float32 and differs by up to ~1e-4 on some sizes) to 1e-6."""
    frames = np.random.default_rng(4).integers(0, 256, (1, 37, 53, 3), dtype=np.uint8)
    use_ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        for spec in [Preprocess(size=(17, 29), levels=1), Preprocess(size=(60, 61), levels=1, roi=(2, 3, 49, 31)),
                     Preprocess(size=(9, 64), levels=1, roi=(52, 0, 1, 37), channels=1, mean=(0.5,), std=(0.2,)),
                     Preprocess(size=(17, 29), levels=1, resize="linear"), Preprocess(size=(12, 13), levels=1)]:
            (image,) = fd_triton.frame_to_bands_triton(torch.from_numpy(frames).to(DEVICE), spec, block=BIG)
            reference = preprocess_frame(frames[0], spec)
            assert float(np.abs(image[0].cpu().numpy() - reference).max()) <= 1e-6
    finally:
        cv2.ipp.setUseIPP(use_ipp)


def test_public_frame_to_bands_one_frame(poisoned: None) -> None:
    frame = np.random.default_rng(5).integers(0, 256, (30, 41), dtype=np.uint8)  # one gray H x W frame
    spec = Preprocess(size=(24, 20), levels=2)
    bands = frame_to_bands(torch.from_numpy(frame).to(DEVICE), spec, impl="triton")
    _assert_close(bands, _opencv_bands(frame[None, :, :, None], spec), 1e-4)


def test_public_frame_to_bands_registers_before_the_kernel(poisoned: None) -> None:
    """preprocess.register rigid: the frames are moved into the reference pose on the CPU, then the
    fused kernel runs on them; the same bands as the OpenCV path, which registers in preprocess_frame."""
    rng = np.random.default_rng(6)
    frames = cv2.GaussianBlur(rng.integers(0, 256, (2, 40, 44, 3), dtype=np.uint8).reshape(80, 44, 3), (5, 5), 2).reshape(2, 40, 44, 3)
    reference = register.encode_reference(register.to_gray_small(frames[0][::-1].copy()))  # a pose neither frame has
    spec = Preprocess(size=(24, 20), levels=2, register="rigid", reference=reference)
    bands = frame_to_bands(torch.from_numpy(frames).to(DEVICE), spec, impl="triton")
    _assert_close(bands, _opencv_bands(frames, spec), 1e-4)
    plain = _opencv_bands(frames, replace(spec, register="none", reference=None))
    assert float(np.abs(bands[0].cpu().numpy() - plain[0]).max()) > 0.1  # registration did move them


def test_real_image(poisoned: None) -> None:
    folder = DATA / "mvtec_bottle" / "train" / "good"
    if not folder.is_dir():
        pytest.skip(f"no data at {folder}")
    image = cv2.imread(str(sorted(folder.glob("*.png"))[0]))
    assert image is not None
    spec = Preprocess(size=(40, 40), levels=3, roi=(60, 50, 400, 431))
    bands = fd_triton.frame_to_bands_triton(torch.from_numpy(image[None]).to(DEVICE), spec, block=BIG)
    _assert_close(bands, _opencv_bands(image[None], spec), 1e-4)


def test_bad_input_raises_user_error() -> None:
    x = torch.zeros(1, 1, 16, 16, device=DEVICE)
    frames = torch.zeros(1, 20, 20, 3, dtype=torch.uint8, device=DEVICE)
    spec = Preprocess(size=(16, 16), levels=2)
    bad = [
        lambda: fd_triton.decouple_triton(x.to(torch.int32), 2),  # wrong dtype
        lambda: fd_triton.decouple_triton(x[0], 2),  # wrong rank
        lambda: fd_triton.decouple_triton(torch.zeros(1, 1, 4, 4, device=DEVICE), 3),  # too small for 3 levels
        lambda: fd_triton.decouple_triton(x, 7),  # too many levels
        lambda: fd_triton.decouple_triton(x.cpu().numpy(), 2),  # not a tensor
        lambda: fd_triton.decouple_triton(x, 2, block=8),  # no such block
        lambda: fd_triton.frame_to_bands_triton(frames.float(), spec),  # not uint8
        lambda: fd_triton.frame_to_bands_triton(frames[0], spec),  # wrong rank
        lambda: fd_triton.frame_to_bands_triton(torch.zeros(1, 20, 20, 2, dtype=torch.uint8, device=DEVICE), spec),
        lambda: fd_triton.frame_to_bands_triton(frames, Preprocess(size=(16, 16), roi=(10, 10, 11, 5))),  # ROI outside
        lambda: fd_triton.frame_to_bands_triton(frames, {"size": (16, 16)}),  # not a spec
        lambda: Preprocess(size=(16, 16), roi=(0, 0, 0, 5)),  # empty ROI
        lambda: Preprocess(size=(4, 4), levels=3),  # output too small for the levels
        lambda: frame_to_bands(frames.float(), spec, impl="triton"),
    ]
    for i, call in enumerate(bad):
        with pytest.raises(UserError):
            call()
            pytest.fail(f"case {i} did not raise")


_COMPILE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from edgefreq.kernels.fd_triton import CHUNK, WARPS, _fd_kernel

pointers = {"src": None, "out": "*fp32", "pw": "*fp32", "qw": "*fp32", "pstart": "*i32", "qstart": "*i32",
            "pchunks": "*i32", "qchunks": "*i32", "ty": "*i32", "wy": "*fp32", "tx": "*i32", "wx": "*fp32",
            "norm": "*fp32"}
for arch, mode, levels, block, taps in [(90, 1, 2, 16, 4), (90, 2, 3, 32, 2), (90, 0, 2, 64, 1), (87, 1, 3, 32, 8)]:
    sig = dict(pointers, src="*fp32" if mode == 0 else "*u8")
    sig.update({n: "i32" for n in ["H", "W", "C", "s_b", "s_c", "s_y", "s_x", "tiles_h", "tiles_w"]})
    sig["level_stride"] = "i64"
    const = dict(LEVELS=levels, MODE=mode, CH_MUL=-1, CH_ADD=2, CLIP=True, BLOCK=block, K=CHUNK, PSPAN=96, QSPAN=96,
                 TY=taps, TX=taps)
    sig.update({n: "constexpr" for n in const})
    kernel = triton.compile(ASTSource(_fd_kernel, sig, constexprs=const), target=GPUTarget("cuda", arch, 32),
                            options=dict(num_warps=WARPS[block]))
    assert ".entry _fd_kernel" in kernel.asm["ptx"], arch
print("compiled")
"""


def test_kernel_compiles_for_cuda(tmp_path: Path) -> None:
    """The compiled path (not the interpreter) accepts the kernel: PTX + cubin for sm_90 (H100) and
    sm_87 (Jetson Orin), built offline with Triton's bundled ptxas; no GPU needed."""
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError:
        pytest.skip("triton has no CUDA backend here")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_COMPILE)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("levels", [2, 3])
def test_gpu_camera_frames(levels: int) -> None:
    """1080p BGR frames -> 256 x 256 bands, compiled kernel vs OpenCV (and decouple vs torch on CUDA)."""
    frames = np.random.default_rng(6).integers(0, 256, (4, 1080, 1920, 3), dtype=np.uint8)
    frames[:, 200:700, 300:1400] //= 3  # some structure for the low bands
    spec = Preprocess(size=(256, 256), levels=levels)
    bands = fd_triton.frame_to_bands_triton(torch.from_numpy(frames).cuda(), spec)
    _assert_close(bands, _opencv_bands(frames, spec), 1e-4)
    gray = Preprocess(size=(255, 257), levels=levels, channels=1, mean=(0.5,), std=(0.5,), roi=(100, 50, 1501, 1001))
    use_ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)  # odd scales: OpenCV's own resize (see test_preprocessing_is_opencvs_resize_exactly)
    try:
        bands = fd_triton.frame_to_bands_triton(torch.from_numpy(frames).cuda(), gray)
        _assert_close(bands, _opencv_bands(frames, gray), 1e-4)
    finally:
        cv2.ipp.setUseIPP(use_ipp)
    x = torch.rand(3, 3, 1080, 1920, device="cuda")
    from edgefreq.kernels.fd_torch import decouple_torch

    for b, r in zip(fd_triton.decouple_triton(x, levels), decouple_torch(x, levels)):
        assert float((b - r).abs().max()) <= 1e-4
