"""`edgefreq export RUN --out NAME.onnx [--fp16] [--int8]`: the run's model as ONNX + sidecars.

Writes NAME.onnx + NAME.yaml (fp32, the reference and the CPU runtime's engine), and with
--fp16 NAME.fp16.onnx (the input of FP16 TensorRT plans), with --int8 NAME.int8.onnx (Q/DQ,
ranges measured on the run's calibration images: good images it never trained on). Every file
is checked on ONNX Runtime against the torch model (INT8: its score drift is reported), on the
run's calibration images when they are there, on random bands otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgefreq.errors import UserError
from edgefreq.export.calibration_images import CHECK_IMAGES, calibration_batches, calibration_paths, sample_bands
from edgefreq.export.onnx import DEFAULT_OPSET, export_onnx
from edgefreq.export.variants import variant_path
from edgefreq.rundir import generator_line, load_run, read_calibration


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="a trained (and calibrated) run folder")
    p.add_argument("--out", type=Path, required=True, help="the ONNX file to write (NAME.onnx; NAME.yaml is its sidecar)")
    p.add_argument("--fp16", action="store_true", help="also write NAME.fp16.onnx (fp16 graph, fp32 I/O) for FP16 TensorRT plans")
    p.add_argument("--int8", action="store_true", help="also write NAME.int8.onnx (INT8 Q/DQ calibrated on the run's calibration images)")
    p.add_argument("--int8-method", choices=("minmax", "percentile"), default="minmax", help="INT8 range calibration (default minmax)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET}, the exporter's lowest)")


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.suffix != ".onnx":
        raise UserError(f"{out}: --out must be a .onnx file")
    model, cfg = load_run(args.run, "cpu")
    beats, line = generator_line(args.run)
    if beats is False:
        print(f"warning: {line}")
    calibration = read_calibration(args.run)
    if calibration is None:
        print(f"warning: {args.run} is not calibrated (no calibration.yaml): the sidecar has no threshold and `edgefreq run` will refuse it; run `edgefreq calibrate {args.run}` and export again")
    paths = calibration_paths(args.run)
    bands = sample_bands(paths, cfg.preprocess)
    if bands is None:
        print(f"warning: the calibration images of {args.run} are not here: checking on random bands instead")
    base = f"edgefreq export {args.run} --out {out}"
    common = dict(kind=cfg.model.kind, opset=args.opset, sample_bands=bands, source_run=str(args.run.resolve()))
    report = export_onnx(model, cfg.preprocess, calibration, out, command=base, **common)
    print(f"wrote {report.engine} + {report.sidecar.name} in {report.seconds:.1f} s; {report.check.summary()}")
    if args.fp16:
        report = export_onnx(model, cfg.preprocess, calibration, variant_path(out, "fp16"), fp16=True, command=f"{base} --fp16", **common)
        print(f"wrote {report.engine} + {report.sidecar.name} in {report.seconds:.1f} s; {report.check.summary()}")
    if args.int8:
        from edgefreq.export.int8 import quantize_int8

        if len(paths) < 2:
            raise UserError(f"INT8 calibration needs the calibration images of {args.run} (split.yaml), and they are not here: export where the data is")
        int8 = quantize_int8(
            out,
            lambda: calibration_batches(paths, cfg.preprocess, CHECK_IMAGES),
            variant_path(out, "int8"),
            method=args.int8_method,
            check_bands=bands,
            command=f"{base} --int8 --int8-method {args.int8_method}",
        )
        print(f"wrote {int8.engine} + {int8.sidecar.name} in {int8.seconds:.1f} s ({int8.images} calibration images); {int8.drift.summary()}")
        if int8.calibration is not None:
            print(f"INT8 threshold {int8.calibration.threshold:.5g} (fp32 {calibration.threshold:.5g}): the fp32 calibration shifted by the median INT8 score drift on its images")
    return 0
