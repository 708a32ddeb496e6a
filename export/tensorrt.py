"""TensorRT plans from the exported ONNX, for TensorRT 10.x (JetPack 6: 10.3) and 11.x (desktop).

    report = build_plan("bottle.fp16.onnx", batch=BatchRange(1, 8, 32))

Precision lives in the ONNX graph, never in builder flags (DESIGN.md decision 9): the fp32
export, the FP16 export (fp16 graph with fp32 I/O, export/onnx.py) or the INT8 Q/DQ export
(calibration/int8.py) is parsed into a *strongly typed* network, whose every layer runs in the
type the graph gives it. TensorRT 11 removed the FP16/INT8 builder flags and the implicit INT8
calibrators; TensorRT 10.x still has them, but we do not use them there either: with the same
path on both versions, a plan built on a Jetson (10.3) and one built on a desktop (11.x) run the
same arithmetic, and what runs is what ONNX Runtime already checked against torch. The price on
10.x: the flags would let TensorRT pick FP16 kernels on its own for the layers of an INT8 model
that are not quantized; here those layers run in FP32 (the score head, by design).

The one version difference in this module: 10.x needs NetworkDefinitionCreationFlag.
STRONGLY_TYPED to get a strongly typed network; in 11.x every network is strongly typed and the
flag is deprecated (ignored), so it is not passed (`network_flags`).

TensorRT is imported only here, lazily (`import_tensorrt`); builder messages go to Python
logging ("edgefreq.tensorrt") through an ILogger subclass; one optimization profile covers the
dynamic batch (min/opt/max); the timing cache persists between builds (one file per TensorRT
version and GPU, loaded before and written back after every build).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from edgefreq.errors import UserError

from .sidecar import BatchRange, Machine, Sidecar, sidecar_path

log = logging.getLogger("edgefreq.tensorrt")

NOT_INSTALLED = "TensorRT is not installed: pip install 'edgefreq[tensorrt]' on the target GPU machine"
MIN_MAJOR = 10
DEFAULT_BATCH = BatchRange(1, 8, 32)
DEFAULT_WORKSPACE_MB = 1024


def import_tensorrt() -> ModuleType:
    """The tensorrt module, or the one-line UserError that says how to install it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        raise UserError(NOT_INSTALLED) from None


def parse_version(text: str) -> tuple[int, int, int]:
    """'10.3.0.30' -> (10, 3, 0); '11.1' -> (11, 1, 0)."""
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if match is None:
        raise UserError(f"cannot read the TensorRT version {text!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def check_version(text: str) -> tuple[int, int, int]:
    """The parsed version, or a UserError for a TensorRT older than 10."""
    version = parse_version(text)
    if version[0] < MIN_MAJOR:
        raise UserError(f"TensorRT {text} is too old: edgefreq builds with TensorRT 10.x (JetPack 6) or 11.x")
    return version


def network_flags(trt: ModuleType, version: tuple[int, int, int]) -> int:
    """create_network flags for a strongly typed network: the flag on 10.x, nothing on 11.x (always strongly typed)."""
    if version[0] == 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def profile_shapes(input_shape: tuple[int, ...], batch: BatchRange) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one band input whose first (batch) dimension is dynamic."""
    if batch.max is None:
        raise UserError("a TensorRT plan needs a maximum batch size (--batch MIN,OPT,MAX)")
    rest = tuple(int(d) for d in input_shape[1:])
    if any(d < 1 for d in rest):
        raise UserError(f"only the batch dimension may be dynamic, the ONNX input has shape {tuple(input_shape)}")
    return (batch.min, *rest), (batch.opt, *rest), (batch.max, *rest)


def default_timing_cache(version: str, machine: Machine) -> Path:
    """~/.cache/edgefreq/tensorrt-VERSION-smXY.timing: one cache per TensorRT version and GPU."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgefreq"
    cc = (machine.compute_capability or "0.0").replace(".", "")
    return root / f"tensorrt-{version}-sm{cc}.timing"


def default_plan_path(onnx_path: str | Path, machine: Machine) -> Path:
    """bottle.fp16.onnx -> bottle.fp16.sm87.plan: a plan is only good for one GPU model, so its name says which."""
    onnx_path = Path(onnx_path)
    cc = (machine.compute_capability or "0.0").replace(".", "")
    return onnx_path.with_name(f"{onnx_path.stem}.sm{cc}.plan")


_SEVERITY_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "VERBOSE": logging.DEBUG,
}


def make_logger(trt: ModuleType) -> Any:
    """A trt.ILogger that hands every TensorRT message to Python logging and keeps the errors."""
    levels = {getattr(trt.ILogger.Severity, name): level for name, level in _SEVERITY_LEVELS.items()}

    class TrtLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity, logging.INFO)
            if level >= logging.ERROR:
                self.errors.append(msg)
            log.log(level, "TensorRT: %s", msg)

    return TrtLogger()


@dataclass(frozen=True)
class PlanReport:
    engine: Path
    sidecar: Path
    seconds: float
    tensorrt_version: str
    network_flags: int
    timing_cache: Path


def build_plan(
    onnx_path: str | Path,
    out_path: str | Path | None = None,
    *,
    precision: str | None = None,
    batch: BatchRange = DEFAULT_BATCH,
    timing_cache: str | Path | None = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    trt: ModuleType | None = None,
    machine: Machine | None = None,
) -> PlanReport:
    """Build `onnx_path` (an edgefreq export, with its sidecar) into a TensorRT plan + sidecar.

    `precision`, when given, must be the ONNX's own (fp32 / fp16 / int8: the graph decides);
    `batch` is the optimization profile; `timing_cache` defaults to default_timing_cache();
    `trt` and `machine` are for tests (the tensorrt module and this machine's GPU).
    """
    trt = import_tensorrt() if trt is None else trt
    version = check_version(trt.__version__)
    onnx_path = Path(onnx_path)
    source = Sidecar.load(onnx_path)
    if source.format != "onnx":
        raise UserError(f"{onnx_path}: a plan is built from an ONNX export, this is a {source.format} engine")
    if precision is not None and precision != source.precision:
        raise UserError(
            f"{onnx_path} is the {source.precision} export; for a {precision} plan build its {precision} export "
            f"(edgefreq export RUN --out NAME.onnx --{precision}) and pass that .onnx"
        )
    if batch.max is None:
        raise UserError("a TensorRT plan needs a maximum batch size (--batch MIN,OPT,MAX)")
    if workspace_mb < 1:
        raise UserError(f"the TensorRT workspace must be at least 1 MiB, got {workspace_mb}")
    machine = Machine.probe() if machine is None else machine
    if machine.gpu is None:
        raise UserError("building a TensorRT plan needs the target NVIDIA GPU, and this machine has none: build on the machine that runs it")
    out_path = default_plan_path(onnx_path, machine) if out_path is None else Path(out_path)
    if out_path.suffix != ".plan":
        raise UserError(f"{out_path}: a TensorRT plan must end in .plan")
    if sidecar_path(out_path) == sidecar_path(onnx_path):
        raise UserError(f"{out_path}: its sidecar would overwrite {sidecar_path(onnx_path).name} of {onnx_path.name}; choose another --out")
    cache_path = default_timing_cache(trt.__version__, machine) if timing_cache is None else Path(timing_cache)

    start = time.perf_counter()
    logger = make_logger(trt)
    flags = network_flags(trt, version)
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors or ["unknown error"]
        raise UserError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors[0]}")
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != list(source.inputs):
        raise UserError(f"{onnx_path}: inputs {names} do not match its sidecar {list(source.inputs)}: {source.remake}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for i, name in enumerate(names):
        profile.set_shape(name, *profile_shapes(tuple(network.get_input(i).shape), batch))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    with tqdm(total=1, desc=f"TensorRT {trt.__version__} build {out_path.name}", unit="plan", leave=False) as bar:
        plan = builder.build_serialized_network(network, config)
        bar.update()
    if plan is None:
        reason = logger.errors[-1] if logger.errors else "see the TensorRT log"
        raise UserError(f"TensorRT {trt.__version__} could not build {onnx_path}: {reason}")
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        tmp.write_bytes(bytes(plan))
        os.replace(tmp, out_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{out_path}: cannot write the plan ({exc.strerror})") from None
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))

    command = f"edgefreq build {onnx_path} --format plan --batch {batch.text()} --out {out_path}"
    side = source.with_engine(
        out_path,
        batch=batch,
        device="cuda",
        tensorrt_version=trt.__version__,
        gpu=machine.gpu,
        compute_capability=machine.compute_capability,
        torch_version=None,
        source_onnx=onnx_path.name,
        command=command,
    )
    side_path = side.write(sidecar_path(out_path))
    log.info("built %s with TensorRT %s in %.1f s", out_path, trt.__version__, time.perf_counter() - start)
    return PlanReport(out_path, side_path, time.perf_counter() - start, trt.__version__, flags, cache_path)
