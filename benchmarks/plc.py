"""Trigger -> verdict as the PLC sees it, over Modbus and OPC UA, on the embedded model.

The real loop (`run_line`, part mode) on the synthetic line at --fps frames per second, the
embedded model through ONNX Runtime; a real pymodbus / asyncua client on loopback triggers
--parts parts one after another and waits for each result. Per protocol it reports p50/p99 of
the client's round trip (trigger written -> result read) and of the record's
`latency_ms.trigger` (trigger arrived -> verdict), and how many parts came back with the wrong id.

    python benchmarks/plc.py [--parts 300] [--fps 60] [--out benchmarks/results/plc.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import threading
import time
from pathlib import Path

import numpy as np

from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.backends import EMBEDDED
from edgefreq.runtime.trigger import connect_triggers
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.loop import run_line
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sources import SourceOptions, open_source
from edgefreq.runtime.trigger import Triggers


def modbus_plc(port: int, parts: int, round_trips: list, wrong: list) -> None:
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
    client.connect()
    seq = 0
    for k in range(parts):
        part = 100000 + k
        start = time.perf_counter()
        client.write_registers(10, [part >> 16, part & 0xFFFF])
        client.write_coil(3, True)
        while True:
            ready = client.read_coils(0, count=6).bits[4]
            regs = client.read_holding_registers(20, count=8).registers
            if ready and regs[0] != seq:
                break
        round_trips.append((time.perf_counter() - start) * 1000)
        seq = regs[0]
        wrong.append(((regs[1] << 16) | regs[2]) != part)
        client.write_coil(5, True)
    client.close()


def opcua_plc(url: str, parts: int, round_trips: list, wrong: list) -> None:
    from asyncua import Client

    from edgefreq.runtime.sinks.opcua import NAMESPACE

    async def run() -> None:
        got: asyncio.Queue = asyncio.Queue()

        class Handler:
            def event_notification(self, event) -> None:
                got.put_nowait(event)

        async with Client(url, timeout=5) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            vision = await client.nodes.objects.get_child([f"{idx}:VisionSystem"])
            kind = await client.nodes.root.get_child(["0:Types", "0:EventTypes", "0:BaseEventType", f"{idx}:ResultReadyEventType"])
            subscription = await client.create_subscription(5, Handler())
            await subscription.subscribe_events(vision, kind)
            for k in range(parts):
                start = time.perf_counter()
                await vision.call_method(f"{idx}:StartSingleJob", f"M{k}", f"P{k}")
                event = await asyncio.wait_for(got.get(), 10)
                round_trips.append((time.perf_counter() - start) * 1000)
                wrong.append(event.PartId != f"P{k}")

    asyncio.run(run())


def measure(protocol: str, parts: int, fps: float, port: int) -> dict:
    sink = open_sink(f"{protocol}://127.0.0.1:{port}")
    decisions: list = []  # every part's record, as the sinks got it
    options = SourceOptions(rate=fps, max_frames=0)
    source = open_source("synthetic://", options)
    triggers, stop = Triggers(protocol, timeout_s=5), threading.Event()
    connect_triggers(triggers, [sink], None, source)
    inspector = Inspector(open_backend(EMBEDDED, threads=1))
    round_trips: list[float] = []
    wrong: list[bool] = []

    def plc() -> None:
        try:
            if protocol == "modbus":
                modbus_plc(port, parts, round_trips, wrong)
            else:
                opcua_plc(sink.url, parts, round_trips, wrong)
        finally:
            stop.set()

    driver = threading.Thread(target=plc)
    driver.start()
    summary = run_line(Capture(source, options), inspector, [sink], stop, triggers=triggers,
                       on_inspection=lambda x: decisions.append(x.decision))
    driver.join()
    trigger_ms = np.array([d.latency_ms["trigger"] for d in decisions])
    total_ms = np.array([d.latency_ms["total"] for d in decisions])
    rt = np.array(round_trips)
    return {
        "protocol": protocol, "parts": parts, "answered": len(rt), "wrong_part_id": int(sum(wrong)),
        "not_inspected": summary.not_inspected,
        "round_trip_p50": float(np.percentile(rt, 50)), "round_trip_p99": float(np.percentile(rt, 99)),
        "trigger_p50": float(np.percentile(trigger_ms, 50)), "trigger_p99": float(np.percentile(trigger_ms, 99)),
        "total_p50": float(np.percentile(total_ms, 50)), "total_p99": float(np.percentile(total_ms, 99)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", type=int, default=300)
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--protocols", nargs="+", default=["modbus", "opcua"], choices=["modbus", "opcua"])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "plc.md")
    args = p.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or platform.platform()}), no GPU used: ONNX Runtime CPU, 1 thread"
    rows = []
    for protocol in args.protocols:
        print(f"{protocol}: {args.parts} parts at {args.fps:g} fps ...", flush=True)
        rows.append(measure(protocol, args.parts, args.fps, free_port()))
    header = "| protocol | parts | wrong part id | not inspected | client trigger -> result p50 / p99 ms | record trigger -> verdict p50 / p99 ms | capture -> verdict p50 / p99 ms |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['answered']}/{r['parts']} | {r['wrong_part_id']} | {r['not_inspected']} | "
                     f"{r['round_trip_p50']:.1f} / {r['round_trip_p99']:.1f} | {r['trigger_p50']:.1f} / {r['trigger_p99']:.1f} | "
                     f"{r['total_p50']:.1f} / {r['total_p99']:.1f} |")
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# Trigger -> verdict over Modbus and OPC UA (benchmarks/plc.py)\n\n"
        f"Machine: {machine}. Embedded model (edgefreq/embedded/default.onnx at the commit of this file, ONNX Runtime), synthetic line at {args.fps:g} fps "
        f"(256 x 256 frames), one part at a time, clients on loopback. The trigger -> verdict time includes waiting for "
        f"the first frame captured after the trigger (up to one frame period, {1000 / args.fps:.1f} ms here).\n\n"
        f"Command: `python benchmarks/plc.py --parts {args.parts} --fps {args.fps:g}` ({time.strftime('%Y-%m-%d')})\n\n{table}\n"
    )
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "fps": args.fps, "rows": rows}, indent=2) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
