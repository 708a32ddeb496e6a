"""Training step time by torch thread count, on an idle CPU and beside a competing job.

    python benchmarks/threads.py [--config wfdl-cpu-budget] [--steps 12] [--threads 1 2]

One training step of the config's model (forward, backward, optimizer step; random bands of the
config's size and batch) is timed `--steps` times per thread count (median reported), first with
nothing else started by the benchmark ("idle": whatever else the machine runs still runs, so
the table says what the load average was), then beside a competing process that runs the same
step on one thread without pause ("loaded"). This is the measurement behind train.threads' default
(half the CPUs, at least 1): benchmarks/results/threads-cpu.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from edgefreq.kernels import decouple
from edgefreq.models import build_model
from edgefreq.rundir import load_config

RESULTS = Path(__file__).resolve().parent / "results"


def make_step(config: str):
    cfg = load_config(config)
    spec = cfg.preprocess
    torch.manual_seed(0)
    model = build_model(cfg.model, spec.channels, spec.levels, spec.size).train()
    opt = torch.optim.Adam(model.generator_parameters() or [torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    x = torch.randn(cfg.train.batch_size, spec.channels, *spec.size)

    def step() -> None:
        losses, _ = model.losses_g(decouple(x, spec.levels, "torch"))
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()

    return step


def time_steps(config: str, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    step = make_step(config)
    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compete(config: str, stop) -> None:
    torch.set_num_threads(1)
    step = make_step(config)
    while not stop.is_set():
        step()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="wfdl-cpu-budget")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    rows = []
    for condition in ("idle", "loaded"):
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        rival = None
        if condition == "loaded":
            rival = ctx.Process(target=compete, args=(args.config, stop), daemon=True)
            rival.start()
            time.sleep(3)
        load = os.getloadavg()[0]
        for n in args.threads:
            seconds = time_steps(args.config, n, args.steps)
            rows.append((condition, n, seconds, load))
            print(f"{condition:6s} {n} thread(s): {seconds * 1e3:.0f} ms/step (load average {load:.1f})", file=sys.stderr)
        if rival is not None:
            stop.set()
            rival.join(timeout=30)
    base = {c: next(s for cc, n, s, _ in rows if cc == c and n == args.threads[0]) for c in ("idle", "loaded")}
    lines = [
        f"# Training step time by thread count ({args.config})",
        "",
        f"`python benchmarks/threads.py --config {args.config} --steps {args.steps}`: median of {args.steps} steps, "
        f"{platform.machine()} with {os.cpu_count()} CPUs, torch {torch.__version__}. \"loaded\": beside one process "
        "running the same step on one thread. The load average is the machine's (other jobs included) when the row ran.",
        "",
        "| condition | torch threads | ms per step | vs 1 thread | load average |",
        "|---|---|---|---|---|",
    ]
    for condition, n, seconds, load in rows:
        lines.append(f"| {condition} | {n} | {seconds * 1e3:.0f} | {seconds / base[condition]:.2f}x | {load:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "threads-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
