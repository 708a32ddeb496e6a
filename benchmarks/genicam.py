"""GenICam: capture -> decision latency and lost buffers, from a GigE Vision camera to the verdict.

    python benchmarks/genicam.py [--rates 25 100 250 500 1000] [--seconds 5] [--format Mono8]
                                 [--device ID]   # a real camera instead of the simulator

Without --device it starts Aravis's GigE Vision simulator (arv-fake-gv-camera-0.8) on 127.0.0.1 and
stops it at the end. For each requested frame rate it runs the line (embedded model, ONNX Runtime,
1 thread, JSON lines sink) for --seconds and reports: frames the camera delivered, frames decided,
buffers lost or incomplete at the camera link (Source.lost), frames the capture ring dropped, and
latency percentiles from the camera's own timestamp (the simulator stamps a frame with the host
clock when it starts sending it) and from the capture ring (the record's latency_ms.total) to the
verdict. Writes benchmarks/results/genicam-<machine>.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.backends import EMBEDDED
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sources import Source, SourceOptions, open_source

RESULTS = Path(__file__).resolve().parent / "results"
SIM_SERIAL = "BM01"


class Stamped(Source):
    """A GenICam source that keeps the camera timestamps of the frames it hands to Capture, in order
    (Capture numbers captured frames 0, 1, 2, ..., so a record's frame_id indexes `stamps`)."""

    is_live = True

    def __init__(self, source) -> None:
        self.source, self.uri, self.stamps = source, source.uri, []

    def read(self):
        image = self.source.read()
        if image is not None:
            self.stamps.append(self.source.last_timestamps)
        return image

    def lost(self) -> int:
        return self.source.lost()

    def waiting(self) -> bool:
        return self.source.waiting()

    def close(self) -> None:
        self.source.close()

    def reopen(self) -> None:
        self.source.reopen()


def start_simulator() -> subprocess.Popen:
    binary = shutil.which("arv-fake-gv-camera-0.8")
    if binary is None:
        sys.exit("arv-fake-gv-camera-0.8 is not installed (apt-get install aravis-tools), or pass --device")
    process = subprocess.Popen([binary, "-i", "127.0.0.1", "-s", SIM_SERIAL], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    if process.poll() is not None:
        sys.exit("the simulator did not start (is another one bound to 127.0.0.1:3956?)")
    return process


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def one_rate(uri: str, fps: float, seconds: float, inspector: Inspector) -> dict:
    options = SourceOptions(fps=fps, timeout=2.0)
    source = Stamped(open_source(uri, options))
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "d.jsonl"
        stop = threading.Event()
        timer = threading.Timer(seconds, stop.set)
        capture = Capture(source, options, capacity=4)
        timer.start()
        summary = run_line(capture, inspector, [open_sink(str(records))], stop)
        written = [Decision.from_json(line) for line in records.read_text().splitlines()]
    from_camera = [(d.decided_ts * 1e9 - source.stamps[d.frame_id][0]) / 1e6 for d in written]
    from_arrival = [(d.decided_ts * 1e9 - source.stamps[d.frame_id][1]) / 1e6 for d in written]
    total = [d.latency_ms["total"] for d in written]
    delivered = summary.captured + summary.lost
    return {
        "fps": fps, "seconds": summary.seconds, "camera": delivered / summary.seconds, "decided": summary.frames,
        "decided_fps": summary.frames / summary.seconds, "lost": summary.lost, "dropped": summary.dropped,
        "lost_pct": 100 * summary.lost / delivered if delivered else 0.0,
        "cam50": pct(from_camera, 50), "cam99": pct(from_camera, 99),
        "arr50": pct(from_arrival, 50), "arr99": pct(from_arrival, 99),
        "tot50": pct(total, 50), "tot99": pct(total, 99),
        "accounted": summary.frames == len(written) and summary.captured == summary.frames + summary.dropped,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", type=float, nargs="+", default=[25, 100, 250, 500, 1000])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--format", default="Mono8", help="pixel_format (the simulator: Mono8, RGB8, Bayer*8)")
    p.add_argument("--device", help="a real camera's id (edgefreq cameras) instead of the simulator")
    args = p.parse_args(argv)
    simulator = None if args.device else start_simulator()
    device = args.device or f"Aravis-Fake-{SIM_SERIAL}"
    uri = f"genicam://{device}?pixel_format={args.format}"
    try:
        inspector = Inspector(open_backend(EMBEDDED, threads=1))
        rows = [one_rate(uri, fps, args.seconds, inspector) for fps in args.rates]
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(5)
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    header = ("| asked fps | camera fps | decided fps | lost at the camera | dropped by the ring | "
              "camera -> verdict p50 / p99 ms | arrival -> verdict p50 / p99 | ring -> verdict (record total) p50 / p99 |")
    lines = [
        f"# GenICam: capture -> decision ({machine})",
        "",
        f"Command: `python benchmarks/genicam.py --rates {' '.join(f'{r:g}' for r in args.rates)} --seconds {args.seconds:g} "
        f"--format {args.format}`{' --device ' + args.device if args.device else ''}; source `{uri}` "
        f"({'Aravis GigE Vision simulator on 127.0.0.1, sharing the CPU with the line' if simulator else 'a real camera'}), "
        f"embedded model on ONNX Runtime (1 thread), ring 4, JSON lines sink.",
        "",
        header,
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['fps']:g} | {r['camera']:.1f} | {r['decided_fps']:.1f} | {r['lost']} ({r['lost_pct']:.1f} %) | {r['dropped']} | "
            f"{r['cam50']:.2f} / {r['cam99']:.2f} | {r['arr50']:.2f} / {r['arr99']:.2f} | {r['tot50']:.2f} / {r['tot99']:.2f} |"
        )
    lines += [
        "",
        "camera fps: frames the camera got to us per second, whole or not (captured + lost). lost: incomplete buffers "
        "plus gaps in the camera's frame ids (never captured; in each record's `dropped` and the summary's `lost`). "
        "dropped: whole frames the capture ring discarded because the line was busy (counted, oldest first). "
        f"Every decided frame has its record: {all(r['accounted'] for r in rows)}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"genicam-{platform.machine()}-{'sim' if simulator else 'camera'}.md"
    out.write_text(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
