"""`edgefreq run`: the line. Every frame gets one OK/NOK decision, delivered to every sink.

With no --engine it runs the embedded default model, and with no --camera/--source the synthetic
demo line (300 frames at 30 fps), so `edgefreq run` works on a fresh machine with no GPU and no
camera.

Exit status (docs/decision-record.md): 0 every frame decided and every decision delivered by every
sink; 1 the source failed midway; 2 a user error (one line on stderr: before the line starts, or
the --summary file that could not be written at the end);
3 a sink delivered fewer decisions than it was given (dropped, failed or still unsent at the end);
4 no frame could be inspected (none came, or every one was a fail-safe NOK without a score).
The first that applies, in the order 1, 4, 3.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from edgefreq.cli.options import ENGINE_DEVICE, add_batch, add_device, positive_int, roi, size
from edgefreq.errors import UserError
from edgefreq.runtime import service as line_service
from edgefreq.runtime.backends import embedded_engine, open_backend
from edgefreq.runtime.capture import Capture
from edgefreq.runtime.inspector import Inspector
from edgefreq.runtime.loop import StopSignals, run_line
from edgefreq.runtime.sinks import GRAMMAR, open_sink
from edgefreq.runtime.sources import SourceOptions, open_source
from edgefreq.runtime.trigger import TRIGGER_MODES, Triggers, connect_triggers, take_triggers

DEMO_SOURCE = "synthetic://"
DEMO_OPTIONS = {"rate": 30.0, "max_frames": 300}
EXIT_SOURCE_FAILED, EXIT_SINK_SHORT, EXIT_NOTHING_INSPECTED = 1, 3, 4
EXIT_STATUS = (
    "exit status: 0 all decided and delivered; 1 the source failed; 2 a user error (one line); "
    "3 a sink delivered fewer decisions than it was given; 4 no frame could be inspected"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_STATUS
    p.add_argument("--engine", type=Path, help="engine file (.onnx, .plan, .pt2) or run folder; default: the embedded model")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="N", help="camera index (V4L2 through OpenCV)")
    src.add_argument("--source", metavar="URI", help="v4l2:///dev/videoN, csi://N, rtsp://..., a video/image/folder path, synthetic://")
    p.add_argument("--sink", action="append", metavar="URI", help=f"where decisions go (repeatable; default -): {GRAMMAR}")
    p.add_argument("--roi", type=roi("--roi"), metavar="X,Y,W,H",
                   help="override the sidecar's ROI: left, top, width, height in frame pixels, e.g. 120,80,400,300")
    p.add_argument("--threshold", type=float, metavar="X",
                   help="decide at this raw score instead of the calibrated threshold (recorded as an override in every decision)")
    add_batch(p, 1, "up to N queued frames are inspected together")
    add_device(p, ENGINE_DEVICE)
    p.add_argument("--fd", default="auto", choices=("auto", "opencv", "torch", "triton"), help="FD implementation (default: Triton on CUDA, OpenCV on CPU)")
    p.add_argument("--resolution", type=size("--resolution"), metavar="WxH",
                   help="requested camera resolution, width x height, e.g. 1280x720 (default: the camera's)")
    p.add_argument("--fps", type=float, default=0.0, help="requested camera frame rate")
    p.add_argument("--loop", type=int, help="passes over a file or folder (0 = forever; default 1)")
    p.add_argument("--rate", type=float, help="frames per second from files and the synthetic line (0 = as fast as possible)")
    p.add_argument("--max-frames", type=int, help="stop after N frames (0 = no limit)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds without a frame before a live source is reopened")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the engine (0 = the library's default)")
    p.add_argument("--capacity", type=positive_int("--capacity"), default=4, help="capture ring size; the oldest frame is dropped when full")
    p.add_argument("--trigger", default="free", choices=TRIGGER_MODES,
                   help="free: every frame is a part (default); modbus, opcua, http: inspect the first frame captured after "
                        "each part trigger (docs/modbus.md, docs/opcua.md; http: POST /api/trigger on --http)")
    p.add_argument("--trigger-timeout", type=float, default=2.0, metavar="S",
                   help="a part with no frame within S seconds of its trigger is a fail-safe NOK (default 2)")
    p.add_argument("--trigger-queue", type=positive_int("--trigger-queue"), default=16, metavar="N",
                   help="parts that may wait for a frame; a trigger beyond them is a counted fail-safe NOK (default 16)")
    p.add_argument("--summary", type=Path, help="also write the summary as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="only warnings and the summary on stderr")
    line_service.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="edgefreq: %(message)s", stream=sys.stderr)
    service = line_service.LineService(args)  # --http and systemd notify: up before the engine loads
    try:
        return run_line_of(args, service)
    finally:
        service.close()


def run_line_of(args: argparse.Namespace, service: line_service.LineService) -> int:
    engine = args.engine or embedded_engine()
    demo = args.camera is None and args.source is None
    uri = str(args.camera) if args.camera is not None else args.source or DEMO_SOURCE
    defaults = DEMO_OPTIONS if demo and args.trigger == "free" else {"rate": DEMO_OPTIONS["rate"] if demo else 0.0, "max_frames": 0}
    triggers = None if args.trigger == "free" else Triggers(args.trigger, args.trigger_queue, args.trigger_timeout)
    if triggers is not None:
        take_triggers(triggers, args.sink or [], service)
    options = SourceOptions(
        width=args.resolution[0] if args.resolution else 0, height=args.resolution[1] if args.resolution else 0, fps=args.fps,
        loop=1 if args.loop is None else args.loop,
        timeout=args.timeout,
        rate=defaults["rate"] if args.rate is None else args.rate,
        max_frames=defaults["max_frames"] if args.max_frames is None else args.max_frames,
    )
    if args.summary is not None:
        check_writable(args.summary)
    backend = open_backend(engine, args.device, threads=args.threads)
    inspector = Inspector(backend, args.fd, args.roi, args.threshold)
    sinks = []
    try:
        for sink_uri in args.sink or ["-"]:
            sinks.append(open_sink(sink_uri))
        source = open_source(uri, options)
    except BaseException:
        for sink in sinks:
            sink.close(1.0)
        raise
    logging.getLogger("edgefreq").info(
        "inspecting %s with %s (%s, threshold %.5g)%s", source.uri, engine, backend.device, inspector.threshold,
        " (demo: the synthetic line, 300 frames)" if demo else "",
    )
    if triggers is not None:
        connect_triggers(triggers, sinks, service, source)
    with StopSignals() as stop:
        capture = Capture(source, options, capacity=args.capacity)
        service.ready(inspector, capture, sinks, source.uri)
        summary = run_line(
            capture, inspector, sinks, stop, max_batch=min(args.batch, backend.max_batch or args.batch),
            on_inspection=service.observer(None), triggers=triggers,
        )
    backend.close()
    print(summary.text(), file=sys.stderr)
    if args.summary:
        write_summary(args.summary, summary.to_dict())
    return exit_status(summary, stopped=stop.is_set())


def exit_status(summary, stopped: bool) -> int:
    """The documented exit status of a finished run (module docstring), with the reason logged."""
    log = logging.getLogger("edgefreq")
    if summary.source_error:
        return EXIT_SOURCE_FAILED
    if summary.frames == summary.not_inspected and (summary.frames or not stopped):
        log.error("no frame could be inspected (%d frames, every one a fail-safe NOK)", summary.frames)
        return EXIT_NOTHING_INSPECTED
    short = {name: s for name, s in summary.sinks.items() if s.get("dropped", 0) + s.get("failed", 0) + s.get("unsent", 0)}
    if short:
        log.error("not every decision was delivered: %s", "; ".join(
            f"{name} dropped {s.get('dropped', 0)}, failed {s.get('failed', 0)}, unsent {s.get('unsent', 0)}" for name, s in short.items()
        ))
        return EXIT_SINK_SHORT
    return 0


def check_writable(path: Path) -> None:
    """Refuse, before the line starts, a --summary path that could not be written at the end."""
    if path.is_dir():
        raise UserError(f"--summary {path} is a folder; give a file name")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise UserError(f"--summary {path}: cannot write into {path.parent} ({exc.strerror}); create the folder or choose another path") from None


def write_summary(path: Path, data: dict) -> None:
    """The summary as JSON, through a temporary file; a failure is one line (the summary is on stderr already)."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UserError(f"--summary {path}: could not write it ({exc.strerror}); the summary above is complete") from None
