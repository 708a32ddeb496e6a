"""One prepared run on an NVIDIA GPU (torch + Triton, no TensorRT needed), in at most ~12 minutes.

    pip install --no-deps --no-build-isolation -e . && python benchmarks/gpu.py --out "$OUT"
    python benchmarks/gpu.py --rehearse            # on a CPU: every step, tiny, to check the plumbing
    python benchmarks/gpu.py --steps fd pipeline   # some steps only

Steps, in this order, each in its own process with its own time limit (one that fails, hangs or
takes CUDA down costs only its own result); after every step gpu-<device>.md and
gpu-<device>.json are rewritten in --out, so a run cut short keeps what it measured:

    env        GPU, driver, versions, ONNX Runtime's providers
    tests      pytest -m gpu (the test files that have GPU tests)
    fd         benchmarks/fd.py --device cuda: the fused Triton FD kernel vs separate torch ops,
               achieved bandwidth vs the device's peak and a measured copy (writes fd-<device>.md)
    fd-blocks  every tile size (16, 32, 64) of the FD kernel at 2 and 3 levels, batch 1 and 32: the
               achieved fraction of the measured copy bandwidth, and whether pick_block's model picks
               the fastest (all tile sizes must give the same bands)
    pipeline   frame -> decision on the device: pinned upload, one FD launch, the model, the
               threshold compare and the verdict copied back, with no host sync before the verdict
               (checked with torch.cuda.set_sync_debug_mode("error")); eager, torch.compile, and the
               whole chain captured in one CUDA graph at batch 1
    latency-edge, latency-embedded
               benchmarks/latency.py --device cuda, one model each: the model stage on eager, compile,
               ONNX Runtime (its CUDA provider when it has one) and AOTInductor .pt2 for CUDA, batch 1,
               8, 32 (writes latency-MODEL/latency-<device>.md)
    train-ocrgan, train-wfdl
               a short training in the paper setting (config `paper`: OCR-GAN 256 px, ngf 64; WFDL at
               full width, config `edge` with model.wfdl_width=1) on synthetic-line images (the real
               data sets do not travel to the GPU machine), a bounded number of epochs: seconds per
               epoch, images per second, peak GPU memory, and the projected time of the config's epochs

`--rehearse` runs the same steps on the CPU with tiny sizes (FD under TRITON_INTERPRET=1, CUDA-only
parts reported as such): its numbers mean nothing, it shows that every step runs to the end.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TAIL = 6000  # characters of each step's output kept in the results


# --- the steps: (name, time limit on the GPU in s, command on the GPU, command in a rehearsal) -----


def steps(out: Path, work: Path) -> list[tuple[str, int, list[str], list[str]]]:
    py, me = sys.executable, str(Path(__file__).resolve())
    gpu_tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())
    pytest = [py, "-m", "pytest", "-q", "-m", "gpu", "-rs", "-p", "no:cacheprovider", *gpu_tests]
    fd = [py, str(ROOT / "benchmarks" / "fd.py"), "--out", str(out)]
    latency = [py, str(ROOT / "benchmarks" / "latency.py"), "--out"]
    inner = [py, me, "--work", str(work), "--inner"]
    on_cuda = ["--device", "cuda", "--backends", "eager", "compile", "onnxruntime", "pt2", "--batches", "1", "8", "32", "--reps", "100", "--warmup", "10"]
    on_cpu = ["--device", "cpu", "--backends", "eager", "onnxruntime", "--batches", "1", "--reps", "2", "--warmup", "1", "--images", "2"]
    return [
        ("env", 25, inner + ["env"], inner + ["env", "--rehearse"]),
        ("tests", 80, pytest, pytest),
        ("fd", 50, fd + ["--device", "cuda"], fd + ["--device", "cpu", "--reps", "1", "--levels", "2", "--batches", "1"]),
        ("fd-blocks", 70, inner + ["fd-blocks"], inner + ["fd-blocks", "--rehearse"]),
        ("pipeline", 120, inner + ["pipeline"], inner + ["pipeline", "--rehearse"]),
        # one model per step: latency.py writes its table at the end, so a time limit loses one model, not both
        ("latency-edge", 110, latency + [str(out / "latency-edge"), "--model", "edge", *on_cuda],
         latency + [str(out / "latency-edge"), "--model", "edge", *on_cpu]),
        ("latency-embedded", 80, latency + [str(out / "latency-embedded"), "--model", "embedded", *on_cuda],
         latency + [str(out / "latency-embedded"), "--model", "embedded", *on_cpu]),
        ("train-ocrgan", 100, inner + ["train", "paper", "--epochs", "10"], inner + ["train", "paper", "--epochs", "1", "--rehearse"]),
        ("train-wfdl", 50, inner + ["train", "wfdl-cpu-budget", "--epochs", "20", "--set", "model.wfdl_width=1.0"],
         inner + ["train", "wfdl-cpu-budget", "--epochs", "1", "--set", "model.wfdl_width=1.0", "--rehearse"]),
    ]


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi (the runner imports no torch: CUDA stays in the steps)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return text.strip().splitlines()[0].strip() if text.strip() else None


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_step(command: list[str], limit: float, env: dict[str, str]) -> tuple[str, float, str]:
    """(status, seconds, output tail): ok | failed (exit N) | timed out after N s."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the step and every process it started
            proc.wait()
            status = f"timed out after {limit:.0f} s"
        log.seek(0)
        text = log.read().replace("\r", "\n")
    lines = [ln for ln in text.splitlines() if ln.strip() and not re.search(r"\d+%\|", ln)]  # progress bars out
    return status, time.perf_counter() - start, "\n".join(lines)[-TAIL:]


def summary_line(name: str, tail: str) -> str:
    """The step's own one-line result: the last line starting with RESULT:, else pytest's closing line, else the last line."""
    found = re.findall(r"^RESULT: (.+)$", tail, re.M)
    if found:
        return found[-1]
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|error).*?)\s*=*$", tail, re.M)
    if found:
        return found[-1]
    return tail.strip().splitlines()[-1][:200] if tail.strip() else ""


def write_results(out: Path, device: str, results: list[dict], started: str, command: str, rehearse: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    name = f"gpu-{slug(device)}" + ("-rehearsal" if rehearse else "")
    data = {"device": device, "rehearsal": rehearse, "started": started, "command": command, "steps": results}
    rows = "\n".join(f"| {r['step']} | {r['status']} | {r['seconds']:.1f} | {r['summary'].replace('|', '/')} |" for r in results)
    sections = "\n\n".join(f"## {r['step']}\n\n`{' '.join(r['command'])}`\n\n```\n{r['tail']}\n```" for r in results)
    note = "\n**CPU rehearsal: every step ran tiny on the CPU; the numbers mean nothing.**\n" if rehearse else ""
    text = (f"# GPU run: {device}\n{note}\n- command: `{command}`\n- started: {started}\n\n"
            f"| step | status | seconds | result |\n|---|---|---:|---|\n{rows}\n\n{sections}\n")
    for suffix, body in ((".md", text), (".json", json.dumps(data, indent=1))):
        tmp = out / f".{name}{suffix}.tmp"
        tmp.write_text(body)
        os.replace(tmp, out / f"{name}{suffix}")
    return out / f"{name}.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--steps", nargs="+", help="run only these steps (default: all)")
    parser.add_argument("--budget", type=float, default=690, help="seconds for all steps together (default 690)")
    parser.add_argument("--rehearse", action="store_true", help="run every step tiny on the CPU")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--inner", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is not None:
        return inner_main(args.inner, args.work)

    device = gpu_name()
    if device is None and not args.rehearse:
        print("error: nvidia-smi finds no NVIDIA GPU here; on a CPU, --rehearse runs every step tiny", file=sys.stderr)
        return 2
    device = "cpu" if args.rehearse else device
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    command = "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.rehearse:
        env |= {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    deadline = time.monotonic() + args.budget
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgefreq-gpu-") as tmp:
        plan = steps(args.out, Path(tmp))
        unknown = set(args.steps or []) - {s[0] for s in plan}
        if unknown:
            print(f"error: unknown step(s) {', '.join(sorted(unknown))}; steps: {', '.join(s[0] for s in plan)}", file=sys.stderr)
            return 2
        for name, limit, on_gpu, rehearsal in plan:
            if args.steps and name not in args.steps:
                continue
            left = deadline - time.monotonic()
            command_list = rehearsal if args.rehearse else on_gpu
            if left < 10:
                status, seconds, tail = f"not run: {args.budget:.0f} s budget spent", 0.0, ""
            else:
                limit = max(limit * 4, 300) if args.rehearse else min(limit, left)  # the interpreter and 2 cores are slow
                print(f"[{name}] {' '.join(command_list)} (limit {limit:.0f} s)", flush=True)
                status, seconds, tail = run_step(command_list, limit, env)
            results.append({"step": name, "status": status, "seconds": round(seconds, 1), "summary": summary_line(name, tail),
                            "command": command_list, "tail": tail})
            print(f"[{name}] {status} in {seconds:.1f} s: {results[-1]['summary']}", flush=True)
            path = write_results(args.out, device, results, started, command, args.rehearse)
    width = max(len(r["step"]) for r in results)
    print("\n" + "\n".join(f"{r['step']:<{width}}  {r['status']:<22} {r['seconds']:7.1f} s  {r['summary']}" for r in results))
    print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


# --- inner steps (each runs in its own process: `gpu.py --work DIR --inner NAME ...`) --------------


def inner_main(argv: list[str], work: Path) -> int:
    parser = argparse.ArgumentParser(prog="gpu.py --inner")
    parser.add_argument("name", choices=("env", "fd-blocks", "pipeline", "train"))
    parser.add_argument("config", nargs="?")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--rehearse", action="store_true")
    args = parser.parse_args(argv)
    import torch

    if not args.rehearse and not torch.cuda.is_available():
        print("error: torch sees no CUDA device", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.rehearse else "cuda")
    if args.name == "env":
        return inner_env(device)
    if args.name == "fd-blocks":
        return inner_fd_blocks(device, args.rehearse)
    if args.name == "pipeline":
        return inner_pipeline(device, args.rehearse)
    return inner_train(device, args.config, args.overrides, args.epochs, work, args.rehearse)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (their GPU halves are reused, not copied)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def inner_env(device) -> int:
    import platform

    import torch

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for module in ("triton", "onnxruntime", "onnx", "numpy", "cv2", "tensorrt", "tensorrt_rtx"):
        if importlib.util.find_spec(module) is not None:
            parts.append(f"{module} {getattr(__import__(module), '__version__', '?')}")
        else:
            parts.append(f"{module} absent")
    print("versions: " + ", ".join(parts))
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        print("onnxruntime providers: " + ", ".join(onnxruntime.get_available_providers()))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(f"CUDA {torch.version.cuda}; {props.name}, compute capability {props.major}.{props.minor}, "
              f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs")
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit",
                              "--format=csv"], capture_output=True, text=True).stdout
        print(smi.strip())
        print(f"RESULT: {props.name} (sm_{props.major}{props.minor}), torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        print(f"RESULT: CPU rehearsal, torch {torch.__version__}")
    return 0


def inner_fd_blocks(device, rehearse: bool) -> int:
    import numpy as np
    import torch

    from edgefreq.kernels import Preprocess
    from edgefreq.kernels.fd_triton import BLOCKS, frame_to_bands_triton, pick_block

    fd = load_benchmark("fd")
    if rehearse:
        fd.FRAME, size, reps, blocks, cases = (48, 64, 3), (32, 32), 1, (16, 32), [(2, 1)]
    else:
        size, reps, blocks, cases = (256, 256), 50, BLOCKS, [(lv, b) for lv in (2, 3) for b in (1, 32)]
    if device.type == "cuda":
        peak, ceiling = fd.peak_bandwidth()
        timer = lambda fn: fd.gpu_time(fn, reps)  # noqa: E731 - microseconds, CUDA events
        note = f"measured D2D copy {ceiling / 1e9:.0f} GB/s (read + write), device-properties peak {peak / 1e9:.0f} GB/s"
    else:
        ceiling, timer, note = float("nan"), lambda fn: fd.cpu_time(fn, reps, warmup=1), "CPU rehearsal (interpreter): no bandwidth"
    rng = np.random.default_rng(0)
    rows, misses = [], 0
    for levels, batch in cases:
        spec = Preprocess(size=size, levels=levels)
        frames = torch.from_numpy(rng.integers(0, 256, (batch, *fd.FRAME), dtype=np.uint8)).to(device)
        moved = fd.bytes_per_frame(spec)
        chosen = pick_block(*size, levels)
        reference = frame_to_bands_triton(frames, spec, block=chosen)
        times = {}
        for block in blocks:
            bands = frame_to_bands_triton(frames, spec, block=block)
            diff = max(float((p - q).abs().max()) for p, q in zip(bands, reference))
            if diff > 1e-4:
                print(f"error: block {block} differs from block {chosen} by {diff:.2e} at {levels} levels, batch {batch}", file=sys.stderr)
                return 1
            times[block] = timer(lambda block=block: frame_to_bands_triton(frames, spec, block=block)) / batch
        best = min(times, key=times.get)
        misses += best != chosen
        for block, us in times.items():
            rows.append([str(levels), str(batch), str(block), f"{us:.1f}", f"{moved / (us * 1e-6) / 1e9:.1f}",
                         f"{100 * moved / (us * 1e-6) / ceiling:.1f}", ("picked" if block == chosen else "") + (" fastest" if block == best else "")])
    print(f"FD kernel tile sizes, {fd.FRAME[1]}x{fd.FRAME[0]} frame -> {size[1]}x{size[0]} bands, per frame; {note}\n")
    print(table(["levels", "batch", "block", "us/frame", "GB/s", "% of copy", ""], rows))
    print(f"RESULT: pick_block chose the fastest tile in {len(cases) - misses}/{len(cases)} cases; best "
          f"{max(float(r[5]) for r in rows):.1f} % of the measured copy bandwidth")
    return 0


def inner_pipeline(device, rehearse: bool) -> int:
    import numpy as np
    import torch

    from edgefreq.export.onnx import BandsToScore
    from edgefreq.kernels.fd_triton import frame_to_bands_triton
    from edgefreq.models import build_model
    from edgefreq.rundir import load_config
    from edgefreq.runtime.bench import Timer

    cuda = device.type == "cuda"
    frame_shape, reps, warmup = ((96, 128, 3), 2, 1) if rehearse else ((720, 1280, 3), 200, 20)
    configs = ["embedded"] if rehearse else ["edge", "embedded"]
    timer = Timer(device)
    rng = np.random.default_rng(0)
    rows, notes = [], []
    for name in configs:
        cfg = load_config(name)
        spec = cfg.preprocess
        torch.manual_seed(0)
        model = BandsToScore(build_model(cfg.model, spec.channels, spec.levels, spec.size).to(device).eval())
        threshold = torch.tensor(0.0, device=device)  # the value does not change the work
        variants = {"eager": model, "compile": torch.compile(model, dynamic=False)}
        for batch in (1,) if rehearse else (1, 8):
            host = torch.from_numpy(rng.integers(0, 256, (batch, *frame_shape), dtype=np.uint8))
            host = host.pin_memory() if cuda else host
            frames = torch.empty(host.shape, dtype=torch.uint8, device=device)
            verdict = torch.empty(batch, dtype=torch.bool, pin_memory=cuda)

            def chain(fn) -> torch.Tensor:
                frames.copy_(host, non_blocking=True)
                score, _ = fn(*frame_to_bands_triton(frames, spec))
                verdict.copy_(score > threshold, non_blocking=True)
                return score

            with torch.inference_mode():
                reference = chain(model).double().cpu()
                runs = {k: (lambda fn=fn: chain(fn)) for k, fn in variants.items()}
                if batch == 1 and cuda:
                    runs["cuda graph"] = capture(chain, model, torch)
                for label, run in runs.items():
                    try:
                        run()  # compiles / warms up
                        syncs = no_host_sync(run, torch) if cuda else "n/a (CPU)"
                        samples = timer.samples(run, reps, warmup)
                        score = run().double().cpu()
                    except Exception as exc:  # noqa: BLE001 - one variant failing is a result, not the end
                        notes.append(f"{name} / {label} / batch {batch}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                        continue
                    err = float((score - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
                    p50, p99 = float(np.percentile(samples, 50)), float(np.percentile(samples, 99))
                    rows.append([name, label, str(batch), f"{p50:.3f}", f"{p99:.3f}", f"{p50 / batch:.3f}", syncs, f"{err:.1e}"])
        if not cuda:
            notes.append(f"{name} / cuda graph: needs CUDA (rehearsal on the CPU)")
    print(f"frame -> decision on {device}: {frame_shape[1]}x{frame_shape[0]} uint8 frames in pinned host memory -> upload -> "
          f"fused Triton FD -> model -> score > threshold -> verdict to pinned host memory; {timer.name}, "
          f"p50 / p99 of {reps} after {warmup} warm-ups, one synchronize per call (after the verdict copy)\n")
    print(table(["model", "variant", "batch", "p50 ms", "p99 ms", "ms/frame", "host syncs before the verdict", "max rel. score error vs eager"], rows))
    for note in notes:
        print(f"not run: {note}")
    best = min((r for r in rows if r[2] == "1"), key=lambda r: float(r[3]), default=None)
    print("RESULT: " + (f"batch 1 frame -> decision fastest: {best[0]} {best[1]} {best[3]} ms p50" if best else "no variant ran")
          + (f"; {len(notes)} not run" if notes else ""))
    return 0 if rows else 1


def capture(chain, model, torch):
    """The whole chain (upload, FD, model, compare, verdict copy) as one CUDA graph at batch 1; replay runs it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs asks
            chain(model)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = chain(model)

    def replay():
        graph.replay()
        return out

    return replay


def no_host_sync(run, torch) -> str:
    """'none' when one call of run makes no synchronizing CUDA call (torch raises in debug mode "error")."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run()
    except RuntimeError as exc:
        return f"SYNC: {str(exc).splitlines()[0][:60]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return "none"


def synthetic_data(root: Path, count: int, size: tuple[int, int]) -> Path:
    """MVTec-layout train/good of `count` good synthetic-line frames (made once per run)."""
    import cv2

    from edgefreq.runtime.sources.synthetic import SyntheticLine

    good = root / "train" / "good"
    if good.is_dir():
        return root
    good.mkdir(parents=True)
    line = SyntheticLine(size, seed=0, defect_rate=0.0)
    for i in range(count):
        cv2.imwrite(str(good / f"{i:03d}.png"), line.frame(i)[0])
    return root


def inner_train(device, config: str, overrides: list[str], epochs: int, work: Path, rehearse: bool) -> int:
    import torch
    import yaml

    from edgefreq.rundir import load_config
    from edgefreq.train import train

    sets = [*overrides, f"train.epochs={epochs}", f"train.device={device.type}"]
    if rehearse:
        sets += ["preprocess.size=[32,32]", "model.ngf=4", "model.ndf=4", "train.batch_size=4"]
    full = load_config(config, overrides)  # the epochs the config itself trains for
    cfg = load_config(config, sets)
    data = synthetic_data(work / "data", 10 if rehearse else 200, (64, 64) if rehearse else (900, 900))
    out = work / f"run-{config}"
    start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        train(cfg, data, out)
    finally:  # a time limit or an error still leaves the epochs done in train_log.jsonl
        log = out / "train_log.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        seconds = [r["seconds"] for r in records]
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "n/a (CPU)"
        split = out / "split.yaml"
        images = len(yaml.safe_load(split.read_text())["train"]) if split.exists() else 0
        p, m = cfg.preprocess, cfg.model
        print(f"{config} ({m.kind}, {p.size[1]}x{p.size[0]}, {p.levels} band(s), batch {cfg.train.batch_size}, "
              f"overrides {overrides or 'none'}) on {images} synthetic training frames: epochs {seconds} s")
        if seconds:
            steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
            projected = seconds[0] + steady * (full.train.epochs - 1)
            print(f"RESULT: {len(seconds)}/{epochs} epochs in {time.perf_counter() - start:.0f} s, first {seconds[0]:.1f} s, then "
                  f"{steady:.2f} s/epoch ({images / steady:.0f} images/s), peak memory {memory}; the config's "
                  f"{full.train.epochs} epochs: ~{projected / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
