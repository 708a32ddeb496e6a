"""`edgefreq build SOURCE --format plan|rtx|pt2`: compile an export for the machine that runs it.

    edgefreq build bottle.onnx --format plan --precision fp16 --batch 1,8,32
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

from edgefreq.errors import UserError
from edgefreq.rundir import load_run

from .cli_export import calibration_paths, run_calibration, sample_bands
from .sidecar import PRECISIONS, BatchRange, Machine, Sidecar

TAGS = ("fp16", "int8")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="an exported NAME.onnx (or, for --format pt2, a run folder)")
    p.add_argument("--format", choices=("plan", "rtx", "pt2"), required=True,
                   help="plan: TensorRT, built on the target GPU; rtx: TensorRT-RTX, built anywhere for RTX GPUs; pt2: AOTInductor (CPU or GPU)")
    p.add_argument("--precision", choices=PRECISIONS, help="plan / rtx precision: picks NAME.fp16.onnx / NAME.int8.onnx (default: the given ONNX's)")
    p.add_argument("--target", help="rtx: compute capabilities the engine runs on, e.g. 8.6,8.9 (default 8.0,8.6,8.9,12.0)")
    p.add_argument("--batch", default="1,8,32", help="batch sizes MIN,OPT,MAX the engine takes (default 1,8,32)")
    p.add_argument("--out", type=Path, help="engine file to write (default: next to the source, named after the GPUs it runs on)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="pt2: compile for the CPU (default) or this machine's GPU")
    p.add_argument("--timing-cache", type=Path, help="plan: TensorRT timing cache file (default ~/.cache/edgefreq/tensorrt-VERSION-smXY.timing)")
    p.add_argument("--workspace", type=int, default=1024, help="plan / rtx: builder workspace in MiB (default 1024)")


def base_path(onnx: Path) -> Path:
    """bottle.fp16.onnx -> bottle (the export's name without precision tag and extension)."""
    stem = onnx.stem
    for tag in TAGS:
        if stem.endswith(f".{tag}"):
            stem = stem[: -len(tag) - 1]
    return onnx.with_name(stem)


def onnx_for(onnx: Path, precision: str | None) -> Path:
    """The ONNX export of `precision` next to `onnx` (the given file when it already is)."""
    if precision is None or Sidecar.read(onnx).precision == precision:
        return onnx
    base = base_path(onnx)
    variant = base.with_name(base.name + ("" if precision == "fp32" else f".{precision}") + ".onnx")
    if not variant.exists():
        flag = "" if precision == "fp32" else f" --{precision}"
        raise UserError(f"no {precision} export {variant.name} next to {onnx.name}: run `edgefreq export RUN --out {base}.onnx{flag}` first")
    return variant


def build_tensorrt_cli(args: argparse.Namespace, batch: BatchRange) -> int:
    from .tensorrt import TENSORRT, TENSORRT_RTX, build_plan, build_rtx, import_tensorrt, parse_targets

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
    from .inductor import build_pt2, default_pt2_path

    if args.precision not in (None, "fp32"):
        raise UserError("pt2 packages are fp32: use --format plan or rtx for fp16 / int8")
    source: Path = args.source
    if source.is_dir():
        run, calibration, stem = source, run_calibration(source), source
    elif source.suffix == ".onnx":
        side = Sidecar.load(source)
        if side.source_run is None or not Path(side.source_run).is_dir():
            raise UserError(f"{source} was exported from the run {side.source_run}, which is not here: pass the run folder instead")
        run, calibration, stem = Path(side.source_run), side.calibration, base_path(source)
    else:
        raise UserError(f"{source}: pass an exported .onnx or a run folder")
    model, cfg = load_run(run, args.device)
    machine = Machine.probe()
    out = args.out or default_pt2_path(stem, args.device, machine)
    command = f"edgefreq build {source} --format pt2 --device {args.device} --batch {batch.text()} --out {out}"
    report = build_pt2(
        model,
        cfg.preprocess,
        calibration,
        out,
        kind=cfg.model.kind,
        device=args.device,
        batch=batch,
        sample_bands=sample_bands(calibration_paths(run), cfg.preprocess, min(8, batch.max)),
        source_run=str(run.resolve()),
        command=command,
        machine=machine,
    )
    print(f"wrote {report.engine} + {report.sidecar.name} in {report.seconds:.1f} s; {report.check.summary()}")
    return 0


def run(args: argparse.Namespace) -> int:
    batch = BatchRange.parse(args.batch)
    if args.format in ("plan", "rtx"):
        return build_tensorrt_cli(args, batch)
    if args.target is not None:
        raise UserError("--target is for --format rtx")
    return build_pt2_cli(args, batch)
