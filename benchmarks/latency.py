"""Latency of the same models on the same real images through every backend this machine has,
next to the physical limit (roofline floor) of the device.

For each model (a shipped config with random weights, or a trained run folder) and each batch
size, the MODEL stage (bands -> score, anomaly map, through the backend's infer: host arrays out)
and the FD stage (uint8 frames -> bands, the Inspector's own fd_stage) are
timed separately on the MVTec bottle test images (../shared/data/mvtec_bottle/test; the
synthetic line stands in, with a message, when they are absent). Backends:

    eager        the torch backend (edgefreq.runtime.backends.reference, a run folder)
    compile      torch.compile of the same model (static shapes: one compile per batch size)
    onnxruntime  the exported .onnx on ONNX Runtime (its CUDA provider when installed)
    pt2          an AOTInductor package (edgefreq.export.inductor), on the CPU or the GPU
    tensorrt     a TensorRT plan (fp32) when tensorrt is installed and there is a GPU

Every ratio is against torch eager measured in the same run. Latency does not depend on the
weights (dense float32 layers do the same arithmetic on any values; the inputs are real images),
so shipped configs are benchmarked with seeded random weights; `--trained NAME=ENGINE.onnx`
also times a trained export of the same architecture on ONNX Runtime to show it.

The floor (edgefreq.roofline): max(FLOPs / peak rate, bytes / bandwidth) for the batch, with the
peak rate and bandwidth measured at the start of the run on this device; FD is a bytes problem
(a few operations a pixel), its floor is the frame read once plus the bands written once (plus
the frame's host -> device copy on a GPU, at the measured pinned-copy bandwidth).

Timing: edgefreq.runtime.bench.Timer (CUDA events on a GPU, perf_counter on the CPU), each call
synchronous (outputs on the host), warm-up calls first, input batches rotated through the images.

    python benchmarks/latency.py                                 # cpu-budget, edge, embedded
    nice python benchmarks/latency.py --threads 1 --reps 20      # on shared CPU cores
    python benchmarks/latency.py --model runs/bottle --batches 1 8 32

Writes benchmarks/results/latency-<device>.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import itertools
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from edgefreq.config import to_dict, write_yaml
from edgefreq.errors import UserError
from edgefreq.export.inductor import build_pt2
from edgefreq.export.onnx import BandsToScore, export_onnx
from edgefreq.export.sidecar import BatchRange
from edgefreq.kernels import Preprocess, frame_to_bands
from edgefreq.runtime.inspector import fd_stage
from edgefreq.models import build_model, count_parameters
from edgefreq.roofline import ModelCost, Peaks, measure_peaks, model_cost
from edgefreq.rundir import RunConfig, load_config, load_run
from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.bench import Timer
from edgefreq.runtime.backends import EMBEDDED
from edgefreq.runtime.sources import SyntheticLine

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec_bottle" / "test"
BACKENDS = ("eager", "compile", "onnxruntime", "pt2", "tensorrt")

Infer = Callable[[list], tuple[np.ndarray, np.ndarray]]


@dataclass
class Subject:
    """One model: its weights in a run folder (given, or written with random weights)."""

    name: str
    cfg: RunConfig
    model: torch.nn.Module
    run: Path
    weights: str  # "random (seed N)" or "trained (RUN)"
    cost: ModelCost
    setup: dict[str, str] = field(default_factory=dict)  # backend -> "12.3 s" or why it did not run


def subject_name(spec: str) -> str:
    """A run folder's name, or a config's name without .yaml."""
    path = Path(spec)
    return path.name if path.is_dir() else path.stem


def load_subject(spec: str, work: Path, seed: int) -> Subject:
    path, name = Path(spec), subject_name(spec)
    if path.is_dir():
        model, cfg = load_run(path, "cpu")
        run, weights = path, f"trained ({path})"
    else:
        cfg = load_config(spec)
        torch.manual_seed(seed)
        model = build_model(cfg.model, cfg.preprocess.channels, cfg.preprocess.levels, cfg.preprocess.size).eval()
        run = work / name
        run.mkdir(parents=True)
        write_yaml(run / "config.yaml", to_dict(cfg))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "model.safetensors"))
        weights = f"random (seed {seed})"
    p = cfg.preprocess
    return Subject(name, cfg, model.eval(), run, weights, model_cost(model, p.channels, p.size, p.levels))


def load_images(count: int) -> tuple[list[np.ndarray], str]:
    """Up to `count` MVTec bottle test images (BGR uint8, sorted paths), or synthetic frames."""
    paths = sorted(DATA.glob("*/*.png"))[:count] if DATA.is_dir() else []
    if paths:
        images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
        h, w = images[0].shape[:2]
        return images, f"{len(images)} MVTec AD bottle test images ({DATA}, {w}x{h} BGR)"
    print(f"note: {DATA} not found: using synthetic line frames (900x900) instead of the real images", file=sys.stderr)
    line = SyntheticLine((900, 900), seed=0)
    return [line.frame(i)[0] for i in range(count)], "synthetic line frames, 900x900 (the MVTec images were absent)"


def make_backend(kind: str, subject: Subject, device: torch.device, work: Path, batches: list[int], sample: list[np.ndarray],
                 threads: int, compile_mode: str) -> tuple[Infer, str, Callable[[], None]]:
    """(infer, the device it runs on, close) for one backend; raises when the backend cannot run here."""
    spec, kind_name = subject.cfg.preprocess, subject.cfg.model.kind
    top = max(max(batches), 2)
    if kind == "eager":
        backend = open_backend(subject.run, device.type)
        return backend.infer, backend.device, backend.close
    if kind == "compile":
        model, _ = load_run(subject.run, device.type)
        compiled = torch.compile(BandsToScore(model), dynamic=False, mode=compile_mode)

        def infer(bands: list) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                score, amap = compiled(*(torch.as_tensor(b).to(device, torch.float32) for b in bands))
            return score.cpu().numpy(), amap.cpu().numpy()

        return infer, str(device), lambda: None
    onnx_path = work / f"{subject.name}.onnx"
    if kind in ("onnxruntime", "tensorrt") and not onnx_path.exists():
        export_onnx(subject.model, spec, None, onnx_path, kind=kind_name, sample_bands=sample)
    if kind == "onnxruntime":
        backend = open_backend(onnx_path, "auto", threads)
    elif kind == "pt2":
        path = work / f"{subject.name}.{device.type}.pt2"
        build_pt2(subject.model, spec, None, path, kind=kind_name, device=device.type, batch=BatchRange(1, min(8, top), top), sample_bands=sample)
        backend = open_backend(path)
    elif kind == "tensorrt":
        if device.type != "cuda":
            raise UserError("TensorRT needs a CUDA GPU")
        if importlib.util.find_spec("tensorrt") is None:
            raise UserError("tensorrt is not installed")
        from edgefreq.export.tensorrt import build_plan

        plan = build_plan(onnx_path, work / f"{subject.name}.plan", batch=BatchRange(1, min(8, top), top), timing_cache=work / "trt.cache")
        backend = open_backend(plan.engine)
    else:
        raise ValueError(kind)
    return backend.infer, backend.device, backend.close


def gpu_h2d_bandwidth(mib: int = 256) -> float:
    """Pinned host -> device copy, bytes per second (CUDA events, median of 10)."""
    host = torch.empty(mib << 20, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty_like(host, device="cuda")
    ms = statistics.median(Timer("cuda").samples(lambda: dev.copy_(host, non_blocking=True), 10, 2))
    return host.numel() / (ms / 1000.0)


def fd_floor_ms(frame: np.ndarray, spec: Preprocess, batch: int, peaks: Peaks, h2d: float | None) -> float:
    bands = spec.levels * spec.channels * spec.size[0] * spec.size[1] * 4
    seconds = batch * (frame.nbytes + bands) / peaks.bytes_per_s
    if h2d:
        seconds += batch * frame.nbytes / h2d
    return 1000.0 * seconds


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = re.search(r"model name\s*:\s*(.+)", text)
    return f"{found.group(1).strip() if found else platform.processor()}, {os.cpu_count()} cores"


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}", f"opencv {cv2.__version__}", f"numpy {np.__version__}"]
    for module in ("onnxruntime", "triton", "tensorrt"):
        if importlib.util.find_spec(module) is not None:
            parts.append(f"{module} {__import__(module).__version__}")
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}")
    return ", ".join(parts)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def parse_trained(items: list[str], names: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in names or not Path(path).is_file():
            raise UserError(f"--trained {item!r}: expected MODEL=ENGINE.onnx with MODEL one of {', '.join(names)} and an existing file")
        out[name] = Path(path)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["cpu-budget", "edge", "embedded"],
                        help="shipped config names / config YAMLs (random weights) or trained run folders")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default: 1 8 on the CPU, 1 8 32 on CUDA)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--reps", type=int, help="timed calls per figure (default 20 on the CPU, 200 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 3 on the CPU, 20 on CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch, OpenCV and ONNX Runtime (0 = theirs)")
    parser.add_argument("--images", type=int, default=64, help="real images to rotate through (default 64)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode (default, reduce-overhead, max-autotune)")
    parser.add_argument("--trained", action="append", default=None, metavar="MODEL=ENGINE.onnx",
                        help="also time a trained export of MODEL on ONNX Runtime (default: embedded=the shipped default model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but torch sees no CUDA device")
    cuda = device.type == "cuda"
    batches = args.batches or ([1, 8, 32] if cuda else [1, 8])
    reps, warmup = args.reps or (200 if cuda else 20), args.warmup if args.warmup is not None else (20 if cuda else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    names = [subject_name(m) for m in args.model]
    trained_items = args.trained if args.trained is not None else ([f"embedded={EMBEDDED}"] if "embedded" in names and EMBEDDED.exists() else [])
    trained = parse_trained(trained_items, names)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    timer = Timer(device)

    print(f"measuring the ceilings of {device_name(device)} ...", file=sys.stderr)
    peaks = measure_peaks(device)
    h2d = gpu_h2d_bandwidth() if cuda else None
    images, images_note = load_images(args.images)
    if len(images) < max(batches):
        raise UserError(f"{len(images)} images cannot fill a batch of {max(batches)}: raise --images")
    model_rows, latency_rows, fd_rows, failures, setup_lines = [], [], [], [], []
    fd_specs: dict[Preprocess, list[str]] = {}  # FD input -> the models that take it
    with tempfile.TemporaryDirectory(prefix="edgefreq-latency-") as tmp:
        work = Path(tmp)
        for spec_text, name in zip(args.model, names):
            subject = load_subject(spec_text, work, args.seed)
            spec, cost = subject.cfg.preprocess, subject.cost
            # Real bands for every image (the model stage's inputs), as the FD stage makes them.
            bands_all = [np.concatenate(parts) for parts in zip(*(
                [b.numpy() for b in frame_to_bands(img, spec, impl="opencv")] for img in images))]
            inputs = {
                b: [[torch.from_numpy(x[i:i + b]).to(device) if cuda else x[i:i + b] for x in bands_all]
                    for i in range(0, len(images) - b + 1, b)]
                for b in batches
            }
            sample = [x[:4] for x in bands_all]
            model_rows.append([
                name, subject.weights, f"{spec.size[1]}x{spec.size[0]} x {spec.levels}", f"{count_parameters(subject.model) / 1e6:.2f} M",
                f"{cost.flops / 1e9:.3f}", f"{cost.weight_bytes / 1e6:.2f}", f"{(cost.input_bytes + cost.output_bytes) / 1e6:.3f}",
                f"{cost.activation_bytes / 1e6:.2f}",
            ])
            runs = [(k, None) for k in args.backends] + ([("onnxruntime", trained[name])] if name in trained else [])
            eager: dict[int, tuple[float, np.ndarray]] = {}
            for kind, engine in tqdm(runs, desc=f"latency {name}", unit="backend"):
                label = kind if engine is None else f"onnxruntime, trained {engine.name}"
                try:
                    start = time.perf_counter()
                    if engine is None:
                        infer, where, close = make_backend(kind, subject, device, work, batches, sample, args.threads, args.compile_mode)
                    else:
                        backend = open_backend(engine, "auto", args.threads)
                        if backend.preprocess != spec:
                            raise UserError(f"{engine} takes {backend.preprocess}, not the {name} model's input")
                        infer, where, close = backend.infer, backend.device, backend.close
                    setup = time.perf_counter() - start
                except Exception as exc:  # a backend that cannot run here is reported, not fatal
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    subject.setup[label] = f"not run: {reason}"
                    failures.append(f"{name} / {label}: {reason}")
                    if not isinstance(exc, UserError):
                        traceback.print_exc()
                    continue
                first_calls = []
                for b in batches:
                    cycle = itertools.cycle(inputs[b])
                    check, first_ms = timer.measure(lambda: infer(inputs[b][0]))  # compiles for this shape when it must
                    first_calls.append(first_ms)
                    samples = timer.samples(lambda: infer(next(cycle)), reps, warmup)
                    p50, p99 = float(np.percentile(samples, 50)), float(np.percentile(samples, 99))
                    floor, bound = peaks.floor_ms(cost, b)
                    if kind == "eager" and engine is None:
                        eager[b] = (p50, check[0])
                    ratio = f"{eager[b][0] / p50:.2f}x" if b in eager else "-"
                    err = f"{rel_err(check[0], eager[b][1]):.1e}" if b in eager and engine is None else "-"
                    latency_rows.append([name, label, where, str(b), f"{p50:.2f}", f"{p99:.2f}", f"{p50 / b:.3f}", ratio,
                                         f"{floor:.3f} ({bound})", f"{p50 / floor:.1f}x", err])
                close()
                firsts = ", ".join(f"batch {b}: {m / 1000:.2f} s" for b, m in zip(batches, first_calls))
                subject.setup[label] = f"setup {setup:.1f} s; first call {firsts}"
            fd_specs.setdefault(spec, []).append(name)
            for label, text in subject.setup.items():
                print(f"{name} / {label}: {text}", file=sys.stderr)
            setup_lines += [f"- {name} / {k}: {v}" for k, v in subject.setup.items()]

    for spec, users in tqdm(fd_specs.items(), desc="FD stage", unit="input size"):
        for b in batches:
            groups = [np.stack(images[i:i + b]) for i in range(0, len(images) - b + 1, b)]
            cycle = itertools.cycle(groups)
            samples = timer.samples(lambda: fd_stage(next(cycle), spec, device), reps, warmup)
            p50, p99 = float(np.percentile(samples, 50)), float(np.percentile(samples, 99))
            floor = fd_floor_ms(images[0], spec, b, peaks, h2d)
            fd_rows.append([", ".join(users), f"{spec.size[1]}x{spec.size[0]} x {spec.levels}", "triton" if cuda else "opencv", str(b),
                            f"{p50:.2f}", f"{p99:.2f}", f"{p50 / b:.3f}", f"{floor:.3f}", f"{p50 / floor:.1f}x"])

    load_after = os.getloadavg()
    name = device_name(device)
    slug = "cpu" if not cuda else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    threads = f"{torch.get_num_threads()} torch / {cv2.getNumThreads()} OpenCV threads" + (f", ONNX Runtime {args.threads}" if args.threads else "")
    command = "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])
    model_table = table(["model", "weights", "input (WxH x bands)", "params", "GFLOP/frame", "weights MB/batch",
                         "in+out MB/frame", "activations MB/frame"], model_rows)
    latency_table = table(["model", "backend", "runs on", "batch", "p50 ms/batch", "p99 ms/batch", "ms/frame (p50)",
                           "speed-up vs eager", "floor ms/batch (bound)", "p50 / floor", "max rel. score error vs eager"], latency_rows)
    fd_table = table(["models", "bands", "FD", "batch", "p50 ms/batch", "p99 ms/batch", "ms/frame (p50)", "floor ms/batch (bytes)", "p50 / floor"], fd_rows)
    h2d_text = f"; pinned host -> device copy {h2d / 1e9:.1f} GB/s" if h2d else ""
    text = f"""# Latency: {name}

Model stage (bands -> score + anomaly map, host arrays out) and FD stage (uint8 frames -> bands)
of the same models on the same images through every backend here; `benchmarks/latency.py`.

- device: {name}
- versions: {versions()}
- command: `{command}` (niceness {os.nice(0)})
- date: {started.isoformat(timespec="seconds")}
- threads: {threads}
- 1-minute load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after (5-minute {load_before[1]:.2f} / {load_after[1]:.2f})
- images: {images_note}
- timing: {timer.name}, each call synchronous; {warmup} warm-up calls, then p50 / p99 of {reps} calls per figure
  (with {reps} calls p99 is close to the maximum), input batches rotated through the images
- ceilings (measured at the start of this run): {peaks.how}{h2d_text}
- floor = max(FLOPs / peak rate, bytes / bandwidth) for the batch (edgefreq/roofline.py): FLOPs are
  2 x the MACs of every conv / transposed conv / linear call of the score pass; bytes are the
  weights read once per batch + the band inputs and the outputs (score, map) of every frame +
  every conv / linear output written once and read once (what passes between layer kernels),
  all float32. A batch shares one read of the weights, so its floor per frame falls with the batch.
- latency does not depend on the weights: shipped configs run with seeded random weights; the
  trained embedded export on ONNX Runtime sits beside its random-weight twin to show it.

## Models

{model_table}

Setup: export / package build / plan build (torch.compile compiles in its first call per
batch size), and the first call per batch size (not in the figures below):

{chr(10).join(setup_lines)}

## Model stage

{latency_table}

## FD stage (the Inspector's: stack, {"pinned copy to the GPU, fused Triton kernel" if cuda else "OpenCV"})

Floor: each frame read once and its bands written once at the measured bandwidth{" (+ the frame's host -> device copy)" if cuda else ""}.

{fd_table}
"""
    if failures:
        text += "\n## Not run\n\n" + "\n".join(f"- {f}" for f in failures) + "\n"
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"latency-{slug}.md"
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
