"""`edgefreq bench`: frame -> decision latency of an engine, stage by stage, for each batch size.

    edgefreq bench                                    the embedded model on synthetic 1280x720 frames
    edgefreq bench --engine bottle.plan --batches 1,8,32 --json bench.json
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

from edgefreq.cli.options import ENGINE_DEVICE, add_device, positive_int, size
from edgefreq.errors import UserError
from edgefreq.runtime.backends import embedded_engine, open_backend
from edgefreq.runtime.bench import parse_batches, run_bench
from edgefreq.runtime.sources import SourceOptions, open_source

DEFAULT_SIZE = "1280x720"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", type=Path, help="engine file (.onnx, .plan, .pt2) or run folder; default: the embedded model")
    p.add_argument("--batches", type=parse_batches, default="1,8,32", metavar="LIST",
                   help="the batch sizes to time (images per engine call), comma-separated (default 1,8,32)")
    p.add_argument("--frames", type=positive_int("--frames"), default=300, help="timed frames per batch size, rounded up to whole batches (default 300)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches before each batch size (default 5)")
    p.add_argument("--source", metavar="URI", help="frames: a folder, video, image, camera or synthetic:// URI (files loop); "
                   "default: the synthetic line at --size")
    p.add_argument("--size", type=size("--size"), default=DEFAULT_SIZE, metavar="WxH",
                   help=f"synthetic frame size, width x height (default {DEFAULT_SIZE}, a camera's)")
    add_device(p, ENGINE_DEVICE)
    p.add_argument("--fd", default="auto", choices=("auto", "opencv", "torch", "triton"), help="FD implementation (default: Triton on CUDA, OpenCV on CPU)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch, OpenCV and ONNX Runtime (default: theirs)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    if args.json is not None and not args.json.parent.is_dir():
        raise UserError(f"{args.json.parent}: folder not found for --json; create it or choose another path")
    engine = args.engine or embedded_engine()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    width, height = args.size
    uri = args.source or f"synthetic://?size={width}x{height}"
    backend = open_backend(engine, args.device, args.threads)
    try:
        with open_source(uri, SourceOptions(loop=0)) as source:
            report = run_bench(backend, source, args.batches, args.frames, args.warmup, args.fd, progress=not args.quiet)
    finally:
        backend.close()
    print(report.table())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
