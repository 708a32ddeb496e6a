"""FD speed: one 1080p BGR camera frame -> 256 x 256 RGB bands, per frame, at batch 1 and 32.

CPU: frame_to_bands with impl="torch" (OpenCV preprocessing + the torch reference pyramid) vs
impl="opencv" (the CPU runtime path), wall clock (median of --reps after one warm-up).
CUDA: the fused Triton kernel (one launch per batch) vs the same steps as separate torch ops
(crop, F.interpolate bilinear, channel flip, normalize, decouple_torch), CUDA events, median of
--reps after warm-up; plus achieved bandwidth as a fraction of the GPU's peak.

Bytes a frame must move (GPU columns): the source rows the resize reads (each read once, whole
ROI width, 3 bytes a pixel; at 1080p -> 256 every column's cache sector is touched anyway) plus
the bands written (levels x 3 x 256 x 256 float32). Peak bandwidth: 2 x memory clock x bus width
from torch.cuda device properties; a measured device-to-device copy is printed beside it.

    python benchmarks/fd.py                      # CPU here, CUDA where there is one
    python benchmarks/fd.py --reps 50 --levels 2 3
    python benchmarks/fd.py --device cpu --threads 1   # steadier on shared cores

Writes benchmarks/results/fd-<device>.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgefreq.kernels import Preprocess, frame_to_bands
from edgefreq.kernels.fd_torch import decouple_torch
from edgefreq.kernels.preprocess import roi_box

FRAME = (1080, 1920, 3)
RESULTS = Path(__file__).resolve().parent / "results"


def cpu_time(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    """Median wall time of fn in microseconds, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def gpu_time(fn: Callable[[], object], reps: int, warmup: int = 5) -> float:
    """Median CUDA-event time of fn in microseconds, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)


def torch_steps(frames: torch.Tensor, spec: Preprocess) -> list[torch.Tensor]:
    """The GPU baseline: the fused kernel's steps as separate torch ops on B x H x W x 3 BGR uint8."""
    x, y, w, h = roi_box(spec, frames.shape[1], frames.shape[2])
    img = frames[:, y : y + h, x : x + w].permute(0, 3, 1, 2).float()
    if spec.resize == "area":
        img = F.interpolate(img, size=spec.size, mode="area").flip(1)
    else:
        img = F.interpolate(img, size=spec.size, mode="bilinear", align_corners=False).flip(1)
    mean = torch.tensor(spec.mean, device=img.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=img.device).view(1, -1, 1, 1)
    return decouple_torch((img / 255.0 - mean) / std, spec.levels, spec.clip_high)


def bytes_per_frame(spec: Preprocess) -> int:
    """Source rows the resize reads (whole ROI width) + the bands written, in bytes."""
    from edgefreq.kernels.resize import area_path, resize_table

    x, y, w, h = roi_box(spec, FRAME[0], FRAME[1])
    rows = np.unique(resize_table(h, spec.size[0], y, spec.resize, area_path((h, w), spec.size))[0])
    return rows.size * w * FRAME[2] + spec.levels * spec.channels * spec.size[0] * spec.size[1] * 4


def peak_bandwidth() -> tuple[float, float]:
    """(peak from device properties, measured copy) in bytes per second."""
    props = torch.cuda.get_device_properties(0)
    peak = 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8
    a = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    copy_us = gpu_time(lambda: b.copy_(a), 20)
    return peak, 2 * a.numel() / (copy_us * 1e-6)


def cpu_name() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = re.search(r"model name\s*:\s*(.+)", text)
    model = found.group(1).strip() if found else platform.processor()
    return f"{model}, {os.cpu_count()} cores ({torch.get_num_threads()} torch / {cv2.getNumThreads()} OpenCV threads)"


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}", f"opencv {cv2.__version__}",
             f"numpy {np.__version__}"]
    try:
        import triton

        parts.append(f"triton {triton.__version__}")
    except ImportError:
        pass
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}")
    return ", ".join(parts)


def run_cpu(levels: list[int], batches: list[int], reps: int) -> tuple[list[str], list[list[str]]]:
    rng = np.random.default_rng(0)
    header = ["levels", "batch", "torch us/frame", "opencv us/frame", "opencv speed-up"]
    rows = []
    runs = [(lv, b) for lv in levels for b in batches]
    for lv, b in tqdm(runs, desc="FD on CPU", unit="run"):
        spec = Preprocess(size=(256, 256), levels=lv)
        frames = rng.integers(0, 256, (b, *FRAME), dtype=np.uint8)
        t = {impl: cpu_time(lambda impl=impl: frame_to_bands(frames, spec, impl=impl), reps) / b for impl in ("torch", "opencv")}
        rows.append([str(lv), str(b), f"{t['torch']:.0f}", f"{t['opencv']:.0f}", f"{t['torch'] / t['opencv']:.2f}x"])
    return header, rows


def run_cuda(levels: list[int], batches: list[int], reps: int) -> tuple[list[str], list[list[str]], str]:
    from edgefreq.kernels.fd_triton import frame_to_bands_triton, pick_block

    peak, copy = peak_bandwidth()
    note = f"peak bandwidth {peak / 1e9:.0f} GB/s (device properties); measured D2D copy {copy / 1e9:.0f} GB/s"
    header = ["levels", "batch", "block", "triton us/frame", "torch ops us/frame", "speed-up", "MB/frame",
              "triton % of peak", "torch ops % of peak", "max |triton - torch ops|"]
    rows = []
    rng = np.random.default_rng(0)
    runs = [(lv, b) for lv in levels for b in batches]
    for lv, b in tqdm(runs, desc="FD on CUDA", unit="run"):
        spec = Preprocess(size=(256, 256), levels=lv)
        frames = torch.from_numpy(rng.integers(0, 256, (b, *FRAME), dtype=np.uint8)).cuda()
        t_tri = gpu_time(lambda: frame_to_bands_triton(frames, spec), reps) / b
        t_ops = gpu_time(lambda: torch_steps(frames, spec), reps) / b
        diff = max(float((p - q).abs().max()) for p, q in zip(frame_to_bands_triton(frames, spec), torch_steps(frames, spec)))
        moved = bytes_per_frame(spec)
        rows.append([str(lv), str(b), str(pick_block(256, 256, lv)), f"{t_tri:.1f}", f"{t_ops:.1f}", f"{t_ops / t_tri:.2f}x",
                     f"{moved / 1e6:.2f}", f"{100 * moved / (t_tri * 1e-6) / peak:.1f}",
                     f"{100 * moved / (t_ops * 1e-6) / peak:.1f}", f"{diff:.1e}"])
    return header, rows, note


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default: 5 on CPU, 100 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and OpenCV (default: theirs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    load_before = os.getloadavg()[0]
    if device == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
            return 2
        header, rows, note = run_cuda(args.levels, args.batches, args.reps or 100)
        name = torch.cuda.get_device_name(0)
    else:
        header, rows = run_cpu(args.levels, args.batches, args.reps or 5)
        name = cpu_name()
        note = (f"wall clock, median of {args.reps or 5} after 2 warm-ups; host uint8 frames; 1-minute load average "
                f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (the cores are shared)")
    text = table(header, rows)
    print(f"\nFD, 1080p BGR frame -> 256x256 RGB bands on {name}\n{note}\n\n{text}")
    slug = "cpu" if device == "cpu" else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"fd-{slug}.md"
    command = "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])
    out.write_text(
        f"# FD benchmark: {name}\n\n1080p BGR uint8 frame -> 256 x 256 RGB bands (Preprocess defaults), "
        f"microseconds per frame.\n\n- device: {name}\n- versions: {versions()}\n- command: `{command}`\n"
        f"- timing: {note}\n\n{text}\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
