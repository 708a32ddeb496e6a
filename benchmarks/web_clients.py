"""Does the operator's view slow the line? Line latency with no browser, then with N polling like the page.

    python benchmarks/web_clients.py [--seconds 20] [--clients 5] [--rate 30] [--size 640x480]

The line: the embedded model (ONNX Runtime, 1 thread) on the synthetic line at --rate fps, frames of
--size, with `--http` on loopback. Each phase runs --seconds: first no client, then --clients clients
in a separate process, each doing what the page does (the live frame every 150 ms with If-None-Match,
/api/status every second, /api/gallery every 2 s, each new NOK image once). Per decision: total
latency (capture -> decision) and inspection (preprocess + infer + decide); frames decided and
dropped; requests served. Writes benchmarks/results/web-clients-<machine>.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import threading
import time
from pathlib import Path

import numpy as np

from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.backends import EMBEDDED
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.service import LineService
from edgefreq.runtime.sources import SourceOptions, open_source

RESULTS = Path(__file__).resolve().parent / "results"


def browser(url: str, seconds: float, counts: multiprocessing.Queue) -> None:
    """One page's worth of polling for `seconds`; puts its request count."""
    import requests

    session = requests.Session()
    deadline = time.monotonic() + seconds
    etag, served, seen = None, 0, set()
    next_status = next_gallery = 0.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        r = session.get(url + "/api/frame.jpg", headers={"If-None-Match": etag} if etag else {}, timeout=10)
        etag, served = r.headers.get("ETag", etag), served + 1
        if now >= next_status:
            session.get(url + "/api/status", timeout=10)
            next_status, served = now + 1.0, served + 1
        if now >= next_gallery:
            for part in session.get(url + "/api/gallery", timeout=10).json()["parts"]:
                if part["id"] not in seen:
                    seen.add(part["id"])
                    session.get(f"{url}/api/gallery/{part['id']}.jpg", timeout=10)
                    served += 1
            next_gallery, served = now + 2.0, served + 1
        time.sleep(0.15)
    counts.put(served)


def clients(url: str, n: int, seconds: float, counts: multiprocessing.Queue) -> None:
    threads = [threading.Thread(target=browser, args=(url, seconds, counts)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def phase(args, n_clients: int) -> dict:
    service = LineService(argparse.Namespace(http="127.0.0.1:0", http_public=False, http_cert=None, http_key=None, feedback=None,
                                             gallery=24, ready_within=10.0), {})
    backend = open_backend(EMBEDDED, threads=1)
    inspector = Inspector(backend)
    options = SourceOptions(rate=args.rate, max_frames=0)
    capture = Capture(open_source(f"synthetic://?size={args.size}", options), options)
    service.ready(inspector, capture, [], "synthetic://")
    totals, inspect = [], []

    def record(inspection) -> None:
        lat = inspection.decision.latency_ms
        totals.append(lat["total"])
        inspect.append(lat["preprocess"] + lat["infer"] + lat["decide"])

    stop = threading.Event()
    result = {}
    line = threading.Thread(target=lambda: result.setdefault("summary", run_line(capture, inspector, [], stop, on_inspection=service.observer(record))))
    line.start()
    time.sleep(2.0)  # warm-up, not measured
    start = len(totals)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: the clients share no GIL with the line
    counts = spawn.Queue()
    process = None
    if n_clients:
        process = spawn.Process(target=clients, args=(service.server.url, n_clients, args.seconds, counts))
        process.start()
    time.sleep(args.seconds)
    end = len(totals)
    if process is not None:
        process.join(60)
    stop.set()
    line.join(30)
    service.close()
    backend.close()
    summary = result["summary"]
    t, i = np.array(totals[start:end]), np.array(inspect[start:end])
    served = sum(counts.get() for _ in range(n_clients)) if n_clients else 0
    return {
        "clients": n_clients, "decided": len(t), "dropped": summary.dropped,
        "total_p50": np.percentile(t, 50), "total_p99": np.percentile(t, 99),
        "inspect_p50": np.percentile(i, 50), "inspect_p99": np.percentile(i, 99), "requests": served,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--size", default="640x480")
    args = p.parse_args()
    rows = [phase(args, 0), phase(args, args.clients)]
    header = "| clients | decided | dropped | total p50 ms | total p99 ms | inspection p50 ms | inspection p99 ms | requests served |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['decided']} | {r['dropped']} | {r['total_p50']:.2f} | {r['total_p99']:.2f} | "
                     f"{r['inspect_p50']:.2f} | {r['inspect_p99']:.2f} | {r['requests']} |")
    table = "\n".join(lines)
    print(table)
    machine = platform.machine()
    out = RESULTS / f"web-clients-{machine}.md"
    out.write_text(
        f"# The operator's view and line latency ({machine}, {multiprocessing.cpu_count()} cores, CPU only)\n\n"
        f"`python benchmarks/web_clients.py --seconds {args.seconds:g} --clients {args.clients} --rate {args.rate:g} --size {args.size}`: "
        f"embedded model (ONNX Runtime, 1 thread), synthetic line {args.size} at {args.rate:g} fps, `--http` on loopback; "
        f"each phase {args.seconds:g} s after a 2 s warm-up. The clients run in another process on the same machine "
        f"(each polls like the page: live frame every 150 ms with If-None-Match, status every 1 s, gallery every 2 s).\n\n"
        f"{table}\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
