"""The `edgefreq` command: one verb per pipeline stage.

Every verb is one module here, edgefreq/cli/VERB.py, that defines `add_arguments(parser)` and
`run(args) -> int`: argument parsing, the checks of its flags, what it prints; the work is done by
library code in the stage packages (edgefreq.train, edgefreq.export, edgefreq.runtime, ...). A
verb module never imports another one: what two verbs share lives in a library module, and the
option vocabulary they share in edgefreq.cli.options. Modules are imported only when their verb
runs, so `edgefreq --help` stays fast (and run, bench's parser and cameras need no torch to start).
A UserError anywhere, a bad flag value included, ends in one line on stderr and a non-zero exit.
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
    "train": ("edgefreq.cli.train", "train a model on good images (fixed epoch budget, resumable)"),
    "calibrate": ("edgefreq.cli.calibrate", "score held-out good images: normal range and threshold"),
    "eval": ("edgefreq.cli.eval", "image/pixel AUROC, false-reject and escape rates, figures, report"),
    "export": ("edgefreq.cli.export", "export a run to ONNX (+ fp16 / int8 variants) with its sidecar"),
    "build": ("edgefreq.cli.build", "build an export into a TensorRT plan or an AOTInductor package"),
    "run": ("edgefreq.cli.run", "the line: camera -> FD -> engine -> OK/NOK -> sinks"),
    "bench": ("edgefreq.cli.bench", "frame -> decision latency of an engine per stage and batch size (p50/p90/p99/max, fps)"),
    "cameras": ("edgefreq.cli.cameras", "list the GenICam (GigE Vision / USB3 Vision) cameras Aravis sees, with their URIs"),
    "fd": ("edgefreq.cli.fd", "write the frequency bands of an image as PNGs (what the model sees)"),
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


class UsageError(UserError):
    """A command line argparse refuses (unknown option, missing argument, invalid choice)."""


class Parser(argparse.ArgumentParser):
    """argparse with whole option names only (no --batch for --batches) and one-line errors."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise UsageError(message)


def build_parser(verb: str | None) -> argparse.ArgumentParser:
    """The full parser; only `verb`'s module is imported to add its arguments."""
    parser = Parser(
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
        args = build_parser(verb).parse_args(argv)
    except UserError as exc:  # a missing extra, a bad option or value
        prog = f"edgefreq {verb}" if verb in VERBS else "edgefreq"
        hint = f" (see `{prog} --help`)" if isinstance(exc, UsageError) else ""
        print(f"{prog}: error: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    if args.verb is None:
        build_parser(None).print_help()
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
