"""The `edgefreq` command: one verb per pipeline stage.

Each verb lives in its own module that defines `add_arguments(parser)` and `run(args) -> int`;
modules are imported only when their verb runs, so `edgefreq --help` stays fast.
A UserError anywhere ends in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenCV's C++ warnings (a camera that does not open, a codec) would add lines to our one-line
# errors; set before any verb imports cv2. A user can still ask for them with OPENCV_LOG_LEVEL.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from edgefreq import __version__
from edgefreq.errors import UserError

# verb -> (module, one-line help), in pipeline order.
VERBS: dict[str, tuple[str, str]] = {
    "train": ("edgefreq.train", "train a model on good images (fixed epoch budget, resumable)"),
    "calibrate": ("edgefreq.calibrate", "score held-out good images: normal range and threshold"),
    "eval": ("edgefreq.evaluate", "image/pixel AUROC, false-reject and escape rates, figures, report"),
    "export": ("edgefreq.export.cli_export", "export a run to ONNX (+ fp16 / int8 variants) with its sidecar"),
    "build": ("edgefreq.export.cli_build", "build an export into a TensorRT plan or an AOTInductor package"),
    "run": ("edgefreq.runtime.cli_run", "the line: camera -> FD -> engine -> OK/NOK -> sinks"),
    "bench": ("edgefreq.runtime.cli_bench", "frame -> decision latency of an engine per stage and batch size (p50/p90/p99/max, fps)"),
    "cameras": ("edgefreq.runtime.cli_cameras", "list the GenICam (GigE Vision / USB3 Vision) cameras Aravis sees, with their URIs"),
    "fd": ("edgefreq.kernels.cli", "write the frequency bands of an image as PNGs (what the model sees)"),
}


# a library a verb needs -> the extra that installs it
EXTRAS = {
    "sklearn": "eval", "matplotlib": "eval", "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
    "triton": "triton", "paho": "line", "pymodbus": "line", "requests": "line",
}


def import_verb(module: str):
    """The verb's module, or a UserError naming the extra to install when a library is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        raise UserError(f"this command needs {top}, which is not installed: pip install 'edgefreq[{EXTRAS[top]}]'") from None


def build_parser(verb: str | None) -> argparse.ArgumentParser:
    """The full parser; only `verb`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="edgefreq",
        description="Edge inspection runtime: train -> calibrate -> export -> build -> run.",
    )
    parser.add_argument("--version", action="version", version=f"edgefreq {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_text) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
        if name == verb:
            import_verb(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(verb)
    except UserError as exc:
        print(f"edgefreq {verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    module = import_verb(args._module)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"edgefreq {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edgefreq {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
