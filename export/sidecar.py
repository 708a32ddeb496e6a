"""The sidecar: NAME.yaml next to NAME.onnx / NAME.plan / NAME.pt2 (DESIGN.md decision 7).

One artifact = engine + sidecar. The sidecar says what the engine expects (the full
preprocessing spec: input size, channels, ROI, FD levels, clip_high, mean/std), what it returns
(score + anomaly map), the batch range it was built for, the calibration (normal range, threshold
policy, threshold, false-reject rate), the engine's sha256 and, for engines tied to a machine
(TensorRT plans, AOTInductor packages), the TensorRT / torch version and the GPU they were built
on. `Sidecar.load(engine)` refuses, with one line that says how to fix it, an engine whose sidecar
is missing or malformed, whose hash does not match, or that was built for another machine.

Every sidecar records the exact command that (re)makes its engine (`command`), so a refusal can
say what to run.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import importlib.util
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


from edgefreq import __version__
from edgefreq.calibration import Calibration
from edgefreq.config import from_dict, load_yaml, to_dict, write_yaml
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess
from edgefreq.runtime.record import engine_id

SCHEMA_VERSION = 1
FORMATS = {".onnx": "onnx", ".plan": "plan", ".pt2": "pt2", ".rtx": "rtx"}
PRECISIONS = ("fp32", "fp16", "int8")
OUTPUTS = ("score", "amap")


def sidecar_path(engine: str | Path) -> Path:
    """NAME.yaml for NAME.onnx / NAME.plan / NAME.pt2 (bottle.int8.onnx -> bottle.int8.yaml)."""
    return Path(engine).with_suffix(".yaml")


def engine_format(engine: str | Path) -> str:
    """onnx | plan | pt2 from the file extension, or a UserError naming the known ones."""
    fmt = FORMATS.get(Path(engine).suffix.lower())
    if fmt is None:
        raise UserError(f"{engine}: unknown engine type {Path(engine).suffix!r} (known: {', '.join(FORMATS)})")
    return fmt


def band_names(levels: int) -> tuple[str, ...]:
    """The engine's input names: band0 (lowest frequency) .. band{levels-1}."""
    return tuple(f"band{k}" for k in range(levels))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _base_version(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': the local build tag does not change what a package can load."""
    return version.split("+")[0]


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes an engine takes: min, opt (what TensorRT tunes for), max (None = any, ONNX Runtime)."""

    min: int = 1
    opt: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        top = self.opt if self.max is None else self.max
        if not 1 <= self.min <= self.opt <= top:
            raise UserError(f"batch range must satisfy 1 <= min <= opt <= max, got {self.min},{self.opt},{self.max}")

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        """'1,8,32' (min,opt,max) or '8' (min 1, opt = max = 8), as build's --batches option takes it."""
        try:
            values = [int(v) for v in str(text).split(",")]
        except ValueError:
            raise UserError(f"--batches must be MIN,OPT,MAX or MAX (integers), got {text!r}") from None
        if len(values) == 1:
            return cls(1, values[0], values[0])
        if len(values) != 3:
            raise UserError(f"--batches must be MIN,OPT,MAX or MAX, got {text!r}")
        return cls(*values)

    def text(self) -> str:
        return f"{self.min},{self.opt},{self.max}"


@dataclass(frozen=True)
class Machine:
    """What an engine is tied to: the TensorRT and torch versions and the GPU (None when absent)."""

    torch: str
    tensorrt: str | None = None
    gpu: str | None = None
    compute_capability: str | None = None
    tensorrt_rtx: str | None = None

    @classmethod
    def probe(cls, tensorrt: bool = False, rtx: bool = False) -> Machine:
        """This machine; imports TensorRT / TensorRT-RTX only when asked (slow and often absent)."""
        import torch

        trt_version = rtx_version = None
        if tensorrt and importlib.util.find_spec("tensorrt") is not None:
            trt_version = importlib.import_module("tensorrt").__version__
        if rtx and importlib.util.find_spec("tensorrt_rtx") is not None:
            rtx_version = importlib.import_module("tensorrt_rtx").__version__
        gpu = cc = None
        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            gpu = torch.cuda.get_device_name(index)
            cc = "{}.{}".format(*torch.cuda.get_device_capability(index))
        return cls(torch=str(torch.__version__), tensorrt=trt_version, gpu=gpu, compute_capability=cc, tensorrt_rtx=rtx_version)


@dataclass(frozen=True)
class Sidecar:
    """Everything the runtime needs to know about an engine file, written as NAME.yaml."""

    format: str  # onnx | plan | pt2 | rtx
    engine: str  # the engine's file name (next to the sidecar)
    sha256: str
    model: str  # model kind: ocrgan | skipganomaly | wfdl
    preprocess: Preprocess = field(default_factory=Preprocess)
    precision: str = "fp32"  # fp32 | fp16 | int8 (in the graph itself: strongly typed / Q/DQ)
    inputs: tuple[str, ...] = ("band0", "band1")
    outputs: tuple[str, ...] = OUTPUTS
    batch: BatchRange = field(default_factory=BatchRange)
    calibration: Calibration | None = None  # None before `edgefreq calibrate`
    device: str = "any"  # any (ONNX) | cpu | cuda: where the engine runs
    tensorrt_version: str | None = None  # plans (TensorRT) and rtx engines (TensorRT-RTX)
    targets: tuple[str, ...] = ()  # rtx engines: the compute capabilities they run on
    gpu: str | None = None  # plans and CUDA pt2 packages
    compute_capability: str | None = None
    torch_version: str | None = None  # pt2 packages only
    source_run: str | None = None  # the run folder the model came from
    source_onnx: str | None = None  # plans: the ONNX they were built from
    command: str = ""  # the edgefreq command that makes this engine (quoted in every refusal)
    created_at: str = ""
    edgefreq_version: str = __version__
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.format not in FORMATS.values():
            raise UserError(f"sidecar format must be one of {', '.join(FORMATS.values())}, got {self.format!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"sidecar precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if len(self.inputs) != self.preprocess.levels:
            raise UserError(f"sidecar lists {len(self.inputs)} band inputs for {self.preprocess.levels} FD levels")

    def with_engine(self, engine: str | Path, **changes: Any) -> Sidecar:
        """A copy describing `engine` (hash computed now) with `changes` applied; created_at is now."""
        engine = Path(engine)
        return replace(
            self,
            format=engine_format(engine),
            engine=engine.name,
            sha256=file_sha256(engine),
            created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            edgefreq_version=__version__,
            **changes,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: to_dict(getattr(self, f.name)) for f in fields(self)}
        data["calibration"] = None if self.calibration is None else self.calibration.to_dict()
        return data

    def write(self, path: str | Path) -> Path:
        """Write the sidecar to `path` (sidecar_path(engine)) through a temporary file; returns the path."""
        return write_yaml(path, self.to_dict(), "sidecar")

    @classmethod
    def read(cls, engine: str | Path) -> Sidecar:
        """The sidecar of `engine`, parsed and validated, without touching the engine file."""
        engine = Path(engine)
        path = sidecar_path(engine)
        if not path.exists():
            raise UserError(
                f"engine {engine} has no sidecar {path.name} next to it: copy the engine together with its .yaml, "
                "or re-export / rebuild it (edgefreq export / edgefreq build write both)"
            )
        data = load_yaml(path)
        schema = data.get("schema", SCHEMA_VERSION)
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            raise UserError(f"{path}: sidecar schema {schema} is newer than this edgefreq reads ({SCHEMA_VERSION}): upgrade edgefreq")
        if isinstance(data, dict) and "preprocess" not in data:
            raise UserError(f"{path}: the sidecar has no preprocess block, so nothing says what the engine takes: re-export or rebuild the engine")
        calibration = data.pop("calibration", None)
        side = from_dict(cls, data, where=str(path))
        if calibration is None:
            return side
        return replace(side, calibration=Calibration.from_dict(calibration, where=f"{path}: calibration"))

    @classmethod
    def load(cls, engine: str | Path, machine: Machine | None = None) -> Sidecar:
        """The sidecar of `engine` after every check: engine present, sidecar present and valid,
        format and sha256 match, and for plans / pt2 packages the machine they were built for.

        `machine` is this machine (probed when None); tests pass their own.
        """
        engine = Path(engine)
        fmt = engine_format(engine)
        if not engine.is_file():
            raise UserError(f"engine {engine} not found")
        side = cls.read(engine)
        if side.format != fmt:
            raise UserError(f"{sidecar_path(engine)} describes a {side.format} engine, but {engine.name} is a {fmt} file: {side.remake}")
        digest = file_sha256(engine)
        if digest != side.sha256:
            raise UserError(
                f"engine {engine} does not match its sidecar (sha256 {digest[:12]}... != {side.sha256[:12]}...): "
                f"it was changed or replaced; {side.remake}"
            )
        if fmt in ("plan", "pt2", "rtx"):
            side.check_machine(engine, machine or Machine.probe(tensorrt=fmt == "plan", rtx=fmt == "rtx"))
        return side

    @property
    def engine_id(self) -> str:
        """NAME@HASH: how every decision record names this engine (record.engine_id)."""
        return engine_id(self.engine, self.sha256)

    @property
    def remake(self) -> str:
        """'re-export with `...`' / 'rebuild with `...`': how to make this engine again."""
        verb = "re-export" if self.format == "onnx" else "rebuild"
        return f"{verb} with `{self.command}`" if self.command else f"{verb} it with edgefreq export / edgefreq build"

    def check_machine(self, engine: Path, here: Machine) -> None:
        """Refuse a plan or pt2 package built for another TensorRT / torch version or GPU."""
        where = f"rebuild it on this machine with `{self.command}`" if self.command else "rebuild it on this machine with edgefreq build"
        if self.format == "plan":
            if here.tensorrt is None:
                raise UserError("TensorRT is not installed: pip install 'edgefreq[tensorrt]' on the target GPU machine")
            if here.tensorrt != self.tensorrt_version:
                raise UserError(f"plan {engine} was built with TensorRT {self.tensorrt_version}, this machine has {here.tensorrt}: {where}")
        if self.format == "rtx":
            if here.tensorrt_rtx is None:
                raise UserError("TensorRT-RTX is not installed: pip install 'edgefreq[rtx]'")
            if here.tensorrt_rtx != self.tensorrt_version:
                raise UserError(f"engine {engine} was built with TensorRT-RTX {self.tensorrt_version}, this machine has {here.tensorrt_rtx}: {where}")
            if here.gpu is None:
                raise UserError(f"{engine} is a TensorRT-RTX engine for an RTX GPU (compute capability {', '.join(self.targets)}), and this machine has no CUDA GPU")
            if here.compute_capability not in self.targets:
                raise UserError(
                    f"{engine} runs on compute capability {', '.join(self.targets)}, this machine's {here.gpu} is "
                    f"{here.compute_capability}: rebuild it with `edgefreq build {self.source_onnx or 'NAME.onnx'} --format rtx "
                    f"--target {here.compute_capability}`"
                )
            return
        if self.format == "pt2" and _base_version(here.torch) != _base_version(self.torch_version or ""):
            raise UserError(f"package {engine} was built with torch {self.torch_version}, this machine has {here.torch}: {where}")
        if self.format == "plan" or self.device == "cuda":
            if here.gpu is None:
                raise UserError(f"{engine} was built for the GPU {self.gpu} (compute capability {self.compute_capability}), and this machine has no CUDA GPU")
            if (here.compute_capability, here.gpu) != (self.compute_capability, self.gpu):
                raise UserError(
                    f"{engine} was built on {self.gpu} (compute capability {self.compute_capability}), "
                    f"this machine has {here.gpu} ({here.compute_capability}): {where}"
                )
