"""`edgefreq build SOURCE --format plan|rtx|pt2`: compile an export for the machine that runs it.

    edgefreq build bottle.onnx --format plan --precision fp16 --batches 1,8,32
        -> bottle.fp16.sm87.plan + bottle.fp16.sm87.yaml (built from bottle.fp16.onnx)
    edgefreq build bottle.onnx --format rtx --precision fp16 [--target 8.6,8.9]
        -> bottle.fp16.sm80-86-89-120.rtx + .yaml (TensorRT-RTX: built anywhere, runs on RTX GPUs)
    edgefreq build bottle.onnx --format pt2 [--device cuda]
        -> bottle.cpu.pt2 / bottle.sm87.pt2 (compiled from the run bottle.onnx came from)
    edgefreq build runs/bottle --format pt2

A plan or an RTX engine is built from the ONNX of the asked precision: --precision fp16 / int8
picks the NAME.fp16.onnx / NAME.int8.onnx that `edgefreq export --fp16 / --int8` wrote next to
NAME.onnx. Built engines are named after the GPUs (smXY: compute capability) they are built for,
which also keeps their sidecars apart from the ONNX's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgefreq.cli.options import add_device
from edgefreq.errors import UserError
from edgefreq.export.calibration_images import calibration_paths, sample_bands
from edgefreq.export.sidecar import PRECISIONS, BatchRange, Machine
from edgefreq.export.variants import onnx_for, source_run
from edgefreq.rundir import load_run, resolve_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="an exported NAME.onnx (or, for --format pt2, a run folder)")
    p.add_argument("--format", choices=("plan", "rtx", "pt2"), required=True,
                   help="plan: TensorRT, built on the target GPU; rtx: TensorRT-RTX, built anywhere for RTX GPUs; pt2: AOTInductor (CPU or GPU)")
    p.add_argument("--precision", choices=PRECISIONS, help="plan / rtx precision: picks NAME.fp16.onnx / NAME.int8.onnx (default: the given ONNX's)")
    p.add_argument("--target", help="rtx: compute capabilities the engine runs on, e.g. 8.6,8.9 (default 8.0,8.6,8.9,12.0)")
    p.add_argument("--batches", type=BatchRange.parse, default="1,8,32", metavar="MIN,OPT,MAX",
                   help="the batch sizes the engine takes, MIN to MAX, tuned for OPT; or MAX alone (default 1,8,32)")
    p.add_argument("--out", type=Path, help="engine file to write (default: next to the source, named after the GPUs it runs on)")
    add_device(p, "a pt2 package is compiled for and runs (default cpu; plans and rtx engines run on the GPU)", default=None)
    p.add_argument("--timing-cache", type=Path, help="plan: TensorRT timing cache file (default ~/.cache/edgefreq/tensorrt-VERSION-smXY.timing)")
    p.add_argument("--workspace", type=int, default=1024, help="plan / rtx: builder workspace in MiB (default 1024)")


def build_tensorrt_cli(args: argparse.Namespace, batch: BatchRange) -> int:
    from edgefreq.export.tensorrt import TENSORRT, TENSORRT_RTX, build_plan, build_rtx, import_tensorrt, parse_targets

    lib = TENSORRT if args.format == "plan" else TENSORRT_RTX
    import_tensorrt(lib)  # the one-line answer on a machine without the library, before anything else
    if args.source.suffix != ".onnx":
        raise UserError(f"{args.source}: a {lib.name} engine is built from an exported .onnx")
    if args.format == "plan" and args.target is not None:
        raise UserError("--target is for --format rtx: a plan runs on the GPU it is built on")
    if args.format == "rtx" and args.timing_cache is not None:
        raise UserError("--timing-cache is for --format plan: TensorRT-RTX builds without timing")
    onnx = onnx_for(args.source, args.precision)
    if args.format == "plan":
        report = build_plan(onnx, args.out, precision=args.precision, batch=batch, timing_cache=args.timing_cache, workspace_mb=args.workspace)
        where = ""
    else:
        report = build_rtx(onnx, args.out, precision=args.precision, batch=batch, targets=parse_targets(args.target), workspace_mb=args.workspace)
        where = f", runs on compute capability {', '.join(report.targets)}"
    print(f"wrote {report.engine} + {report.sidecar.name} ({lib.name} {report.tensorrt_version}{where}) in {report.seconds:.1f} s")
    return 0


def build_pt2_cli(args: argparse.Namespace, batch: BatchRange) -> int:
    from edgefreq.export.inductor import build_pt2, default_pt2_path

    if args.precision not in (None, "fp32"):
        raise UserError("pt2 packages are fp32: use --format plan or rtx for fp16 / int8")
    source: Path = args.source
    device = resolve_device(args.device or "cpu").type
    run, calibration, stem = source_run(source)
    model, cfg = load_run(run, device)
    machine = Machine.probe()
    out = args.out or default_pt2_path(stem, device, machine)
    command = f"edgefreq build {source} --format pt2 --device {device} --batches {batch.text()} --out {out}"
    report = build_pt2(
        model,
        cfg.preprocess,
        calibration,
        out,
        kind=cfg.model.kind,
        device=device,
        batch=batch,
        sample_bands=sample_bands(calibration_paths(run), cfg.preprocess, min(8, batch.max)),
        source_run=str(run.resolve()),
        command=command,
        machine=machine,
    )
    print(f"wrote {report.engine} + {report.sidecar.name} in {report.seconds:.1f} s; {report.check.summary()}")
    return 0


def run(args: argparse.Namespace) -> int:
    batch = args.batches
    if args.format in ("plan", "rtx"):
        if args.device is not None:
            raise UserError(f"--device is for --format pt2: a {'plan' if args.format == 'plan' else 'TensorRT-RTX engine'} runs on the GPU")
        return build_tensorrt_cli(args, batch)
    if args.target is not None:
        raise UserError("--target is for --format rtx")
    return build_pt2_cli(args, batch)
