"""Soak: N synthetic frames through the line (ONNX Runtime backend), every decision accounted for,
resident memory sampled 20 times along the way.

    python benchmarks/soak.py [--frames 20000] [--engine edgefreq/embedded/default.onnx] [--rate 0]

Writes benchmarks/results/soak-<machine>.md: frames captured / processed / OK / NOK / dropped,
the decision records written, resident memory, latency percentiles.
--rate 0 reads the synthetic line as fast as the engine takes it: nothing may be dropped, so every
one of the N frames must be captured, decided and recorded with consecutive frame ids (a drop is
a failure, exit 1); a rate above what the machine sustains exercises the drop-oldest ring
(dropped frames are counted, and must show as gaps in the ids).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

from tqdm import tqdm

from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.backends import EMBEDDED
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sources import SourceOptions, open_source

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def problems(summary, ids: list[int], frames: int, rate: float) -> list[str]:
    """What a soak run got wrong: the accounting, the records, and at --rate 0 any drop at all."""
    found = []
    if summary.frames != summary.ok + summary.nok or summary.captured != summary.frames + summary.dropped:
        found.append("ACCOUNTING MISMATCH")
    if len(ids) != summary.frames or ids != sorted(set(ids)):
        found.append("records missing, repeated or out of order")
    if len(ids) != len(set(ids)) or (ids and ids[-1] - ids[0] + 1 - len(ids) != summary.dropped):
        found.append("the gaps in the frame ids are not the dropped frames")
    if rate == 0 and (summary.dropped or summary.captured != frames or ids != list(range(frames))):
        found.append(f"at --rate 0 nothing may be dropped: captured {summary.captured} of {frames}, dropped {summary.dropped}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--engine", type=Path, default=EMBEDDED)
    p.add_argument("--rate", type=float, default=0.0, help="frames per second from the synthetic line (0 = as fast as possible)")
    p.add_argument("--source", default="synthetic://?defect_rate=0.1")
    args = p.parse_args(argv)
    options = SourceOptions(max_frames=args.frames, rate=args.rate)
    backend = open_backend(args.engine)
    inspector = Inspector(backend)
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "decisions.jsonl"
        sink = open_sink(str(records))
        samples: list[tuple[int, float]] = []
        bar = tqdm(total=args.frames, unit="frame", desc="soak")

        step = max(1, args.frames // 20)

        def watch(inspection) -> None:
            bar.update(1)
            if bar.n % step == 0:
                samples.append((bar.n, rss_mib()))

        start = time.perf_counter()
        capture = Capture(open_source(args.source, options), options, capacity=4)
        summary = run_line(capture, inspector, [sink], threading.Event(), on_inspection=watch)
        wall = time.perf_counter() - start
        bar.close()
        written = [Decision.from_json(line) for line in records.read_text().splitlines()]
    ids = [d.frame_id for d in written]
    wrong = problems(summary, ids, args.frames, args.rate)
    lat = summary.percentiles()
    (at, first), (end, last) = samples[1], samples[-1]  # from the second sample on: after warm-up
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    lines = [
        f"# Soak: {args.frames} frames through the line ({machine})",
        "",
        f"Command: `python benchmarks/soak.py --frames {args.frames} --rate {args.rate:g} --engine {args.engine.name}` "
        f"(backend {backend.name} on {backend.device}, source `{args.source}`, ring 4, sink: JSON lines file). "
        f"Load average at the end: {os.getloadavg()[0]:.2f}.",
        "",
        f"- captured {summary.captured}, processed {summary.frames} = {summary.ok} OK + {summary.nok} NOK "
        f"({summary.not_inspected} not inspected), dropped {summary.dropped}: "
        f"{'; '.join(wrong) if wrong else 'every frame accounted for'}",
        f"- decision records written {len(written)}, frame ids {'consecutive' if ids == list(range(len(ids))) else 'with gaps for the dropped'}",
        f"- wall {wall:.1f} s, {summary.frames / wall:.1f} frames/s",
        f"- resident memory: {first:.1f} MiB at frame {at}, {last:.1f} MiB at frame {end} "
        f"(growth {last - first:+.1f} MiB); every {step} frames: " + ", ".join(f"{m:.0f}" for _, m in samples),
        "- latency ms p50 / p99: " + ", ".join(f"{s} {v['p50']:.2f} / {v['p99']:.2f}" for s, v in lat.items()),
        "",
    ]
    if summary.confusion and any(summary.confusion.values()):
        c = summary.confusion
        lines.insert(-1, f"- against the synthetic line's truth: {c['tp']} defects caught, {c['fn']} escaped, {c['fp']} good rejected, {c['tn']} passed")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{platform.machine()}-cpu{f'-rate{args.rate:g}' if args.rate else ''}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
