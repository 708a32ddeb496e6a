"""TensorRT-family engines from the exported ONNX: TensorRT 10.x / 11.x plans and TensorRT-RTX engines.

    report = build_plan("bottle.fp16.onnx", batch=BatchRange(1, 8, 32))   # on the target GPU
    report = build_rtx("bottle.fp16.onnx", batch=BatchRange(1, 8, 32))    # anywhere, CPU included

Two libraries of one family share one ONNX -> network path (`define_network`): the ONNX parser,
a strongly typed network, the engine's I/O names checked against the sidecar, one optimization
profile for the dynamic batch (min/opt/max) and the workspace limit. What differs:

- **TensorRT 10.x / 11.x** (`tensorrt`, JetPack 6 ships 10.3, the desktop wheel is 11.x): a plan
  (.plan) is tuned on, and only runs on, the GPU model it is built on, so it is built there; the
  timing cache persists between builds (one file per TensorRT version and GPU).
- **TensorRT for RTX** (`tensorrt_rtx`, 1.x): builds ahead of time without a GPU, for a list of
  compute capabilities (default: Ampere and later RTX cards, 8.0 / 8.6 / 8.9 / 12.0), and
  compiles its kernels when the engine is loaded on the RTX GPU. Its engines (.rtx) do not run
  on Jetson or on datacenter GPUs. Because it builds on a CPU, CI builds every shipped model
  with it: a layer the parser or the builder rejects shows up, by name, before a user meets it.

Precision lives in the ONNX graph, never in builder flags (DESIGN.md decision 9): the fp32
export, the FP16 export (fp16 graph with fp32 I/O, export/onnx.py) or the INT8 Q/DQ export
(export/int8.py) is parsed into a *strongly typed* network, whose every layer runs in the
type the graph gives it. TensorRT 11 removed the FP16/INT8 builder flags and the implicit INT8
calibrators; TensorRT 10.x still has them, but we do not use them there either: with the same
path on both versions, a plan built on a Jetson (10.3) and one built on a desktop (11.x) run the
same arithmetic, and what runs is what ONNX Runtime already checked against torch. The price on
10.x: the flags would let TensorRT pick FP16 kernels on its own for the layers of an INT8 model
that are not quantized; here those layers run in FP32 (the score head, by design).

The one version difference in the network: TensorRT 10.x needs NetworkDefinitionCreationFlag.
STRONGLY_TYPED to get a strongly typed network; in TensorRT 11.x and TensorRT-RTX every network
is strongly typed and the flag is deprecated, so it is not passed (`network_flags`).

The libraries are imported only here, lazily (`import_tensorrt`); builder messages go to Python
logging ("edgefreq.tensorrt") through an ILogger subclass.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from edgefreq.errors import UserError

from .sidecar import BatchRange, Machine, Sidecar, sidecar_path

log = logging.getLogger("edgefreq.tensorrt")


@dataclass(frozen=True)
class Library:
    """One member of the TensorRT family: its module, its engine format and file suffix."""

    name: str  # as users know it: TensorRT, TensorRT-RTX
    module: str  # the Python module
    format: str  # the sidecar format of its engines
    suffix: str  # engine file extension
    min_major: int  # oldest major version edgefreq builds with
    install: str  # the one line said when the module is missing


TENSORRT = Library("TensorRT", "tensorrt", "plan", ".plan", 10, "TensorRT is not installed: pip install 'edgefreq[tensorrt]' on the target GPU machine")
TENSORRT_RTX = Library("TensorRT-RTX", "tensorrt_rtx", "rtx", ".rtx", 1, "TensorRT-RTX is not installed: pip install 'edgefreq[rtx]'")
NOT_INSTALLED = TENSORRT.install
DEFAULT_BATCH = BatchRange(1, 8, 32)
DEFAULT_WORKSPACE_MB = 1024
RTX_TARGETS = ("8.0", "8.6", "8.9", "12.0")  # TensorRT-RTX's own default: Ampere and later RTX GPUs


def import_tensorrt(lib: Library = TENSORRT) -> ModuleType:
    """The library's module, or the one-line UserError that says how to install it."""
    try:
        return importlib.import_module(lib.module)
    except ImportError:
        raise UserError(lib.install) from None


def parse_version(text: str, lib: Library = TENSORRT) -> tuple[int, int, int]:
    """'10.3.0.30' -> (10, 3, 0); '11.1' -> (11, 1, 0)."""
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if match is None:
        raise UserError(f"cannot read the {lib.name} version {text!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def check_version(text: str, lib: Library = TENSORRT) -> tuple[int, int, int]:
    """The parsed version, or a UserError for a version older than edgefreq builds with."""
    version = parse_version(text, lib)
    if version[0] < lib.min_major:
        what = "TensorRT 10.x (JetPack 6) or 11.x" if lib is TENSORRT else f"{lib.name} {lib.min_major}.x or later"
        raise UserError(f"{lib.name} {text} is too old: edgefreq builds with {what}")
    return version


def network_flags(trt: ModuleType, version: tuple[int, int, int], lib: Library = TENSORRT) -> int:
    """create_network flags for a strongly typed network: the flag on TensorRT 10.x only."""
    if lib is TENSORRT and version[0] == 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def profile_shapes(input_shape: tuple[int, ...], batch: BatchRange) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one band input whose first (batch) dimension is dynamic."""
    if batch.max is None:
        raise UserError("a TensorRT engine needs a maximum batch size (--batches MIN,OPT,MAX)")
    rest = tuple(int(d) for d in input_shape[1:])
    if any(d < 1 for d in rest):
        raise UserError(f"only the batch dimension may be dynamic, the ONNX input has shape {tuple(input_shape)}")
    return (batch.min, *rest), (batch.opt, *rest), (batch.max, *rest)


def parse_targets(text: str | None) -> tuple[str, ...]:
    """'8.6,8.9' or 'sm86,sm89' -> ('8.6', '8.9'); None -> RTX_TARGETS."""
    if text is None:
        return RTX_TARGETS
    targets = []
    for item in str(text).split(","):
        item = item.strip().lower()
        match = re.fullmatch(r"(?:sm_?)?(\d+)(?:\.(\d))?", item)
        if match is None:
            raise UserError(f"--target takes compute capabilities like 8.6,8.9 or sm86,sm89, got {item!r}")
        major, minor = (match[1], match[2]) if match[2] is not None else (match[1][:-1], match[1][-1])
        if not major:
            raise UserError(f"--target takes compute capabilities like 8.6,8.9 or sm86,sm89, got {item!r}")
        cc = f"{int(major)}.{minor}"
        if cc not in targets:
            targets.append(cc)
    return tuple(targets)


def target_tag(targets: tuple[str, ...]) -> str:
    """('8.6',) -> 'sm86'; ('8.0', '8.6') -> 'sm80-86': the engine's file name says where it runs."""
    return "sm" + "-".join(t.replace(".", "") for t in targets)


def default_timing_cache(version: str, machine: Machine) -> Path:
    """~/.cache/edgefreq/tensorrt-VERSION-smXY.timing: one cache per TensorRT version and GPU."""
    cc = (machine.compute_capability or "0.0").replace(".", "")
    return cache_folder() / f"tensorrt-{version}-sm{cc}.timing"


def cache_folder() -> Path:
    """~/.cache/edgefreq (or $XDG_CACHE_HOME/edgefreq): timing and runtime caches."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgefreq"


def default_plan_path(onnx_path: str | Path, machine: Machine) -> Path:
    """bottle.fp16.onnx -> bottle.fp16.sm87.plan: a plan is only good for one GPU model, so its name says which."""
    onnx_path = Path(onnx_path)
    cc = (machine.compute_capability or "0.0").replace(".", "")
    return onnx_path.with_name(f"{onnx_path.stem}.sm{cc}.plan")


def default_rtx_path(onnx_path: str | Path, targets: tuple[str, ...]) -> Path:
    """bottle.fp16.onnx -> bottle.fp16.sm80-86-89-120.rtx: the name says which GPUs it runs on."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{target_tag(targets)}.rtx")


_SEVERITY_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "VERBOSE": logging.DEBUG,
}


def make_logger(trt: ModuleType) -> Any:
    """A trt.ILogger that hands every library message to Python logging and keeps the errors."""
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
class EngineReport:
    engine: Path
    sidecar: Path
    seconds: float
    tensorrt_version: str  # the version of the library that built it (TensorRT or TensorRT-RTX)
    network_flags: int
    timing_cache: Path | None = None  # TensorRT plans
    targets: tuple[str, ...] = ()  # TensorRT-RTX engines: the compute capabilities they run on


@dataclass
class Network:
    """A parsed, strongly typed network with its builder config and optimization profile set."""

    lib: Library
    trt: ModuleType
    logger: Any
    builder: Any
    network: Any
    config: Any
    flags: int


def check_request(
    lib: Library, onnx_path: Path, source: Sidecar, out_path: Path, precision: str | None, batch: BatchRange, workspace_mb: int
) -> None:
    """Refuse, before any build work, what cannot become an engine of `lib` at `out_path`."""
    if source.format != "onnx":
        raise UserError(f"{onnx_path}: a {lib.name} engine is built from an ONNX export, this is a {source.format} engine")
    if precision is not None and precision != source.precision:
        raise UserError(
            f"{onnx_path} is the {source.precision} export; for a {precision} engine build its {precision} export "
            f"(edgefreq export RUN --out NAME.onnx --{precision}) and pass that .onnx"
        )
    if batch.max is None:
        raise UserError("a TensorRT engine needs a maximum batch size (--batches MIN,OPT,MAX)")
    if workspace_mb < 1:
        raise UserError(f"the TensorRT workspace must be at least 1 MiB, got {workspace_mb}")
    if out_path.suffix != lib.suffix:
        raise UserError(f"{out_path}: a {lib.name} engine must end in {lib.suffix}")
    if sidecar_path(out_path) == sidecar_path(onnx_path):
        raise UserError(f"{out_path}: its sidecar would overwrite {sidecar_path(onnx_path).name} of {onnx_path.name}; choose another --out")


def define_network(
    lib: Library, trt: ModuleType, version: tuple[int, int, int], onnx_path: Path, source: Sidecar, batch: BatchRange, workspace_mb: int
) -> Network:
    """ONNX -> strongly typed network + builder config with the batch profile (TensorRT and TensorRT-RTX alike).

    Every layer the parser rejects is named in the one-line error; the engine's inputs and
    outputs must be the sidecar's (band0.., score, amap) or the export is stale.
    """
    logger = make_logger(trt)
    flags = network_flags(trt, version, lib)
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors or ["unknown error"]
        raise UserError(f"{lib.name} {trt.__version__} cannot parse {onnx_path}: {'; '.join(errors)}")
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != list(source.inputs):
        raise UserError(f"{onnx_path}: inputs {names} do not match its sidecar {list(source.inputs)}: {source.remake}")
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    if sorted(outputs) != sorted(source.outputs):
        raise UserError(f"{onnx_path}: outputs {outputs} do not match its sidecar {list(source.outputs)}: {source.remake}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for i, name in enumerate(names):
        profile.set_shape(name, *profile_shapes(tuple(network.get_input(i).shape), batch))
    config.add_optimization_profile(profile)
    return Network(lib, trt, logger, builder, network, config, flags)


def write_engine(net: Network, onnx_path: Path, out_path: Path) -> None:
    """Build the serialized engine and write it to out_path through a temporary file."""
    lib, trt = net.lib, net.trt
    with tqdm(total=1, desc=f"{lib.name} {trt.__version__} build {out_path.name}", unit="engine", leave=False) as bar:
        engine = net.builder.build_serialized_network(net.network, net.config)
        bar.update()
    if engine is None:
        reason = "; ".join(net.logger.errors) if net.logger.errors else "see the TensorRT log"
        raise UserError(f"{lib.name} {trt.__version__} could not build {onnx_path}: {reason}")
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        tmp.write_bytes(bytes(engine))
        os.replace(tmp, out_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{out_path}: cannot write the engine ({exc.strerror})") from None


def open_onnx(lib: Library, trt: ModuleType | None, onnx_path: str | Path) -> tuple[ModuleType, tuple[int, int, int], Path, Sidecar]:
    """The library's module (imported unless given) and version, and the ONNX export with its sidecar."""
    trt = import_tensorrt(lib) if trt is None else trt
    version = check_version(trt.__version__, lib)
    onnx_path = Path(onnx_path)
    return trt, version, onnx_path, Sidecar.load(onnx_path)


def build_engine(
    lib: Library,
    trt: ModuleType,
    version: tuple[int, int, int],
    onnx_path: Path,
    source: Sidecar,
    out_path: Path,
    *,
    precision: str | None,
    batch: BatchRange,
    workspace_mb: int,
    before: Callable[[Any], None],
    after: Callable[[Any], None] = lambda config: None,
    options: str = "",
    sidecar: dict[str, Any],
    report: dict[str, Any],
) -> EngineReport:
    """The build every library of the family shares: the request checked, the network defined
    (define_network), `before(config)` setting the library's own builder options, the engine built
    and written, `after(config)` (TensorRT keeps its timing cache), then the sidecar with the
    library's own `sidecar` fields and `options` in its `edgefreq build` command."""
    check_request(lib, onnx_path, source, out_path, precision, batch, workspace_mb)
    start = time.perf_counter()
    net = define_network(lib, trt, version, onnx_path, source, batch, workspace_mb)
    before(net.config)
    write_engine(net, onnx_path, out_path)
    after(net.config)

    command = f"edgefreq build {onnx_path} --format {lib.format}{options} --batches {batch.text()} --out {out_path}"
    side = source.with_engine(
        out_path,
        batch=batch,
        device="cuda",
        tensorrt_version=trt.__version__,
        torch_version=None,
        source_onnx=onnx_path.name,
        command=command,
        **sidecar,
    )
    side_path = side.write(sidecar_path(out_path))
    seconds = time.perf_counter() - start
    log.info("built %s with %s %s in %.1f s", out_path, lib.name, trt.__version__, seconds)
    return EngineReport(out_path, side_path, seconds, trt.__version__, net.flags, **report)


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
) -> EngineReport:
    """Build `onnx_path` (an edgefreq export, with its sidecar) into a TensorRT plan + sidecar.

    `precision`, when given, must be the ONNX's own (fp32 / fp16 / int8: the graph decides);
    `batch` is the optimization profile; `timing_cache` defaults to default_timing_cache();
    `trt` and `machine` are for tests (the tensorrt module and this machine's GPU).
    """
    trt, version, onnx_path, source = open_onnx(TENSORRT, trt, onnx_path)
    machine = Machine.probe() if machine is None else machine
    if machine.gpu is None:
        raise UserError(
            "building a TensorRT plan needs the target NVIDIA GPU, and this machine has none: build on the machine that runs it "
            "(or build a TensorRT-RTX engine, --format rtx, which needs no GPU)"
        )
    out_path = default_plan_path(onnx_path, machine) if out_path is None else Path(out_path)
    cache_path = default_timing_cache(trt.__version__, machine) if timing_cache is None else Path(timing_cache)

    def use_cache(config: Any) -> None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    def keep_cache(config: Any) -> None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))

    return build_engine(
        TENSORRT, trt, version, onnx_path, source, out_path, precision=precision, batch=batch, workspace_mb=workspace_mb,
        before=use_cache, after=keep_cache,
        sidecar={"gpu": machine.gpu, "compute_capability": machine.compute_capability}, report={"timing_cache": cache_path},
    )


def build_rtx(
    onnx_path: str | Path,
    out_path: str | Path | None = None,
    *,
    precision: str | None = None,
    batch: BatchRange = DEFAULT_BATCH,
    targets: tuple[str, ...] = RTX_TARGETS,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    trt: ModuleType | None = None,
) -> EngineReport:
    """Build `onnx_path` into a TensorRT-RTX engine (.rtx) + sidecar; no GPU needed.

    `targets` are the compute capabilities the engine runs on (each one of the library's
    ComputeCapability members: SM75, SM80, SM86, SM89, SM120, ...); the other arguments are
    build_plan's. `trt` is for tests (the tensorrt_rtx module).
    """
    trt, version, onnx_path, source = open_onnx(TENSORRT_RTX, trt, onnx_path)
    if not targets:
        raise UserError("a TensorRT-RTX engine needs at least one target compute capability (--target)")
    known = {name: member for name, member in trt.ComputeCapability.__members__.items() if re.fullmatch(r"SM\d+", name)}
    capabilities = []
    for cc in targets:
        member = known.get("SM" + cc.replace(".", ""))
        if member is None:
            offered = ", ".join(f"{n[2:-1]}.{n[-1]}" for n in known)
            raise UserError(f"TensorRT-RTX {trt.__version__} cannot build for compute capability {cc}; it builds for {offered}")
        capabilities.append(member)
    out_path = default_rtx_path(onnx_path, targets) if out_path is None else Path(out_path)

    def set_targets(config: Any) -> None:
        config.num_compute_capabilities = len(capabilities)
        for i, member in enumerate(capabilities):
            if not config.set_compute_capability(member, i):
                raise UserError(f"TensorRT-RTX {trt.__version__} refused the target compute capability {targets[i]}")

    return build_engine(
        TENSORRT_RTX, trt, version, onnx_path, source, out_path, precision=precision, batch=batch, workspace_mb=workspace_mb,
        before=set_targets, options=f" --target {','.join(targets)}",
        sidecar={"targets": tuple(targets), "gpu": None, "compute_capability": None}, report={"targets": tuple(targets)},
    )
