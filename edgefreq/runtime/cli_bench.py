"""`edgefreq bench`: frame -> decision latency of an engine, stage by stage, for each batch size.

    edgefreq bench                                    the embedded model on synthetic 1280x720 frames
    edgefreq bench --engine bottle.plan --batch 1,8,32 --json bench.json
    edgefreq bench --engine bottle.onnx --source data/bottle/test/good --frames 500

Frames go through the same Inspector `edgefreq run` uses (edgefreq.runtime.bench); the table
gives p50/p90/p99/max per stage in milliseconds per batch, and the frames per second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import torch

from edgefreq.errors import UserError
from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.bench import parse_batches, run_bench
from edgefreq.runtime.cli_run import EMBEDDED
from edgefreq.runtime.sources import SourceOptions, open_source

DEFAULT_SIZE = "1280x720"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", type=Path, help="engine file (.onnx, .plan, .pt2) or run folder; default: the embedded model")
    p.add_argument("--batch", default="1,8,32", help="batch sizes to time, comma-separated (default 1,8,32)")
    p.add_argument("--frames", type=int, default=300, help="timed frames per batch size, rounded up to whole batches (default 300)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches before each batch size (default 5)")
    p.add_argument("--source", metavar="URI", help="frames: a folder, video, image, camera or synthetic:// URI (files loop); "
                   "default: the synthetic line at --size")
    p.add_argument("--size", default=DEFAULT_SIZE, metavar="WxH", help=f"synthetic frame size (default {DEFAULT_SIZE}, a camera's)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="for .onnx engines and run folders (default auto)")
    p.add_argument("--fd", default="auto", choices=("auto", "opencv", "torch", "triton"), help="FD implementation (default: Triton on CUDA, OpenCV on CPU)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch, OpenCV and ONNX Runtime (default: theirs)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def synthetic_uri(size: str) -> str:
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must be WIDTHxHEIGHT, e.g. 1280x720, got {size!r}") from None
    return f"synthetic://?size={width}x{height}"


def run(args: argparse.Namespace) -> int:
    batches = parse_batches(args.batch)
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    if args.json is not None and not args.json.parent.is_dir():
        raise UserError(f"{args.json.parent}: folder not found for --json; create it or choose another path")
    engine = args.engine or EMBEDDED
    if args.engine is None and not EMBEDDED.exists():
        raise UserError(f"the embedded default model is missing ({EMBEDDED}): reinstall edgefreq or pass --engine")
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    uri = args.source or synthetic_uri(args.size)
    backend = open_backend(engine, args.device, args.threads)
    try:
        with open_source(uri, SourceOptions(loop=0)) as source:
            report = run_bench(backend, source, batches, args.frames, args.warmup, args.fd, progress=not args.quiet)
    finally:
        backend.close()
    print(report.table())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
