"""TensorRT / TensorRT-RTX builds and their backends without the libraries.

Everything that does not need a library is tested here: version parsing and dispatch, network
flags per version, profile shapes, RTX targets, the sidecar a build writes, the one-line error
without the library, and the builder / runtime call sequences against FakeTensorRT below: a TEST
DOUBLE of the `tensorrt` / `tensorrt_rtx` module (same API) that records every call (it builds
nothing; its "engine" computes a simple function of the bands on the CPU, reading and writing the
buffers at the addresses it is given). Builds with the real TensorRT-RTX (no GPU needed) are in
test_rtx_build.py; GPU tests with the real TensorRT are marked `gpu`.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgefreq.cli import main
from edgefreq.errors import UserError
from edgefreq.export.sidecar import BatchRange, Machine, Sidecar, sidecar_path
from edgefreq.export.tensorrt import (
    NOT_INSTALLED,
    RTX_TARGETS,
    TENSORRT_RTX,
    build_plan,
    build_rtx,
    check_version,
    default_plan_path,
    default_rtx_path,
    import_tensorrt,
    network_flags,
    parse_targets,
    parse_version,
    profile_shapes,
)
from edgefreq.kernels import Preprocess
from edgefreq.runtime.backends.rtx import RTXBackend, runtime_cache_path
from edgefreq.runtime.backends.tensorrt import TensorRTBackend

SPEC = Preprocess(size=(8, 6), levels=2)
MACHINE = Machine(torch="2.13.0", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0")


# --- the test double -------------------------------------------------------------------------


class FakeTensorRT:
    """Stand-in for the `tensorrt` module (10.x / 11.x API names), recording calls in `.calls`."""

    class ILogger:
        class Severity(enum.Enum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        def __init__(self) -> None:
            pass

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 1

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class ComputeCapability(enum.IntEnum):  # tensorrt_rtx's members
        NONE = 0
        CURRENT = 1
        SM75 = 75
        SM80 = 80
        SM86 = 86
        SM89 = 89
        SM120 = 120

    FLOAT = "float32"

    def __init__(self, version: str, parse_ok: bool = True, plan: bytes | None = b"PLAN") -> None:
        self.__version__ = version
        self.calls: list[tuple] = []
        self.parse_ok = parse_ok
        self.plan = plan
        fake = self

        class Tensor:
            def __init__(self, name: str, shape: tuple[int, ...]) -> None:
                self.name, self.shape = name, shape

        class Network:
            num_inputs = SPEC.levels
            num_outputs = 2

            def get_input(self, i: int) -> Tensor:
                return Tensor(f"band{i}", (-1, SPEC.channels, *SPEC.size))

            def get_output(self, i: int) -> Tensor:
                return Tensor(("amap", "score")[i], (-1,))

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                fake.calls.append(("profile.set_shape", name, lo, opt, hi))

        class TimingCache:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def serialize(self) -> bytes:
                return self.data + b"+tuned"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("config.set_memory_pool_limit", pool, size))

            def set_flag(self, flag):
                fake.calls.append(("config.set_flag", flag))

            def add_optimization_profile(self, profile):
                fake.calls.append(("config.add_optimization_profile",))

            def create_timing_cache(self, data: bytes):
                fake.calls.append(("config.create_timing_cache", bytes(data)))
                self.cache = TimingCache(bytes(data))
                return self.cache

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("config.set_timing_cache", ignore_mismatch))
                return True

            def get_timing_cache(self):
                return self.cache

            @property
            def num_compute_capabilities(self) -> int:
                return self._capabilities

            @num_compute_capabilities.setter
            def num_compute_capabilities(self, n: int) -> None:
                fake.calls.append(("config.num_compute_capabilities", n))
                self._capabilities = n

            def set_compute_capability(self, capability, index: int) -> bool:
                fake.calls.append(("config.set_compute_capability", capability, index))
                return index < self._capabilities

        class Builder:
            def __init__(self, logger) -> None:
                self.logger = logger
                fake.calls.append(("Builder",))

            def create_network(self, flags: int) -> Network:
                fake.calls.append(("builder.create_network", flags))
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("builder.build_serialized_network",))
                self.logger.log(FakeTensorRT.ILogger.Severity.WARNING, "tactic warning from the fake builder")
                if fake.plan is None:
                    self.logger.log(FakeTensorRT.ILogger.Severity.ERROR, "out of workspace")
                return fake.plan

        class OnnxParser:
            num_errors = 1

            def __init__(self, network, logger) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                fake.calls.append(("parser.parse_from_file", Path(path).name))
                return fake.parse_ok

            def get_error(self, i: int) -> str:
                return "In node 3 (Conv): unsupported attribute"

        self.Builder, self.OnnxParser = Builder, OnnxParser

    @staticmethod
    def nptype(dtype):
        return np.dtype(dtype).type


class FakeEngine:
    """A "plan" whose enqueue computes score = mean(band0 + band1) and amap = channel mean of band0 * band1."""

    names = ("band0", "band1", "score", "amap")

    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt = trt
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str):
        return self.trt.TensorIOMode.INPUT if name.startswith("band") else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> str:
        return self.trt.FLOAT

    def create_execution_context(self, runtime_config: FakeRuntimeConfig | None = None) -> FakeContext:
        self.trt.calls.append(("engine.create_execution_context", runtime_config))
        return FakeContext(self.trt)

    def create_runtime_config(self) -> FakeRuntimeConfig:
        return FakeRuntimeConfig(self.trt)


class FakeRuntimeCache:
    """TensorRT-RTX's runtime cache: takes only blobs this "library" wrote (b"KERNELS..."), grows as kernels compile."""

    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt, self.blob = trt, b""

    def deserialize(self, blob: bytes) -> bool:
        self.trt.calls.append(("cache.deserialize", bytes(blob)))
        if not bytes(blob).startswith(b"KERNELS"):
            return False
        self.blob = bytes(blob)
        return True

    def serialize(self) -> bytes:
        return (self.blob or b"KERNELS") + b"+compiled"


class FakeRuntimeConfig:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt, self.cache = trt, None

    def create_runtime_cache(self) -> FakeRuntimeCache:
        return FakeRuntimeCache(self.trt)

    def set_runtime_cache(self, cache: FakeRuntimeCache) -> bool:
        self.trt.calls.append(("runtime_config.set_runtime_cache",))
        self.cache = cache
        return True

    def get_runtime_cache(self) -> FakeRuntimeCache:
        return self.cache


class FakeContext:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt = trt
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addresses[name] = ptr

    def set_input_shape(self, name: str, shape) -> bool:
        self.trt.calls.append(("context.set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)
        return True

    def view(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return np.ctypeslib.as_array((ctypes.c_float * count).from_address(self.addresses[name])).reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        self.trt.calls.append(("context.execute_async_v3", stream))
        n, c, h, w = self.shapes["band0"]
        b0, b1 = self.view("band0", (n, c, h, w)), self.view("band1", (n, c, h, w))
        self.view("score", (n,))[:] = (b0 + b1).mean(axis=(1, 2, 3))
        self.view("amap", (n, h, w))[:] = (b0 * b1).mean(axis=1)
        return True


def fake_runtime(trt: FakeTensorRT, engine: FakeEngine | None) -> None:
    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes):
            trt.calls.append(("runtime.deserialize_cuda_engine", bytes(data)))
            return engine

    trt.Runtime = Runtime


# --- helpers -----------------------------------------------------------------------------------


def onnx_export(tmp_path: Path, name: str = "bottle.fp16.onnx", precision: str = "fp16") -> Path:
    """A stand-in ONNX export: bytes + a real sidecar (the fake parser never reads the bytes)."""
    path = tmp_path / name
    path.write_bytes(b"onnx bytes")
    side = Sidecar(format="onnx", engine=path.name, sha256="", model="ocrgan", preprocess=SPEC, precision=precision, source_run="/runs/bottle")
    side.with_engine(path, command=f"edgefreq export /runs/bottle --out {name}").write(sidecar_path(path))
    return path


# --- version dispatch, shapes ------------------------------------------------------------------


def test_version_parsing_and_dispatch():
    assert parse_version("10.3.0") == (10, 3, 0)
    assert parse_version("10.3.0.30") == (10, 3, 0)
    assert parse_version("11.1") == (11, 1, 0)
    with pytest.raises(UserError, match="cannot read the TensorRT version"):
        parse_version("dev")
    with pytest.raises(UserError, match="TensorRT 8.6.1 is too old"):
        check_version("8.6.1")
    trt = FakeTensorRT("10.3.0")
    assert network_flags(trt, (10, 3, 0)) == 1 << 1  # STRONGLY_TYPED, opt-in on 10.x
    assert network_flags(trt, (11, 0, 0)) == 0  # always strongly typed on 11.x; the flag is deprecated


def test_profile_shapes():
    assert profile_shapes((-1, 3, 256, 256), BatchRange(1, 8, 32)) == ((1, 3, 256, 256), (8, 3, 256, 256), (32, 3, 256, 256))
    with pytest.raises(UserError, match="only the batch dimension may be dynamic"):
        profile_shapes((-1, 3, -1, 256), BatchRange(1, 8, 32))
    with pytest.raises(UserError, match="needs a maximum batch size"):
        profile_shapes((-1, 3, 256, 256), BatchRange(1, 1, None))


def test_default_names_say_the_gpu(tmp_path):
    assert default_plan_path("out/bottle.fp16.onnx", MACHINE) == Path("out/bottle.fp16.sm90.plan")


# --- no TensorRT -------------------------------------------------------------------------------


def test_without_tensorrt_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(UserError) as exc:
        import_tensorrt()
    assert str(exc.value) == NOT_INSTALLED


def test_build_plan_verb_without_tensorrt(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx = onnx_export(tmp_path, "bottle.onnx", "fp32")
    code = main(["build", str(onnx), "--format", "plan", "--precision", "fp16", "--batches", "1,8,32"])
    err = capsys.readouterr().err
    assert code != 0
    assert err == f"edgefreq build: error: {NOT_INSTALLED}\n"
    assert not list(tmp_path.glob("*.plan"))


# --- the builder call sequence, per version ----------------------------------------------------


@pytest.mark.parametrize("version, flags", [("10.3.0", 2), ("11.1.0", 0)])
def test_build_sequence_per_version(tmp_path, version, flags, caplog):
    trt = FakeTensorRT(version)
    onnx = onnx_export(tmp_path)
    cache = tmp_path / "cache" / "trt.timing"
    with caplog.at_level(logging.WARNING, logger="edgefreq.tensorrt"):
        report = build_plan(onnx, batch=BatchRange(1, 4, 16), timing_cache=cache, workspace_mb=512, trt=trt, machine=MACHINE)
    shape = (SPEC.channels, *SPEC.size)
    assert trt.calls == [
        ("Builder",),
        ("builder.create_network", flags),
        ("parser.parse_from_file", "bottle.fp16.onnx"),
        ("config.set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 512 << 20),
        ("profile.set_shape", "band0", (1, *shape), (4, *shape), (16, *shape)),
        ("profile.set_shape", "band1", (1, *shape), (4, *shape), (16, *shape)),
        ("config.add_optimization_profile",),
        ("config.create_timing_cache", b""),
        ("config.set_timing_cache", False),
        ("builder.build_serialized_network",),
    ]  # no precision builder flag on either version: the fp16 graph decides
    assert "TensorRT: tactic warning from the fake builder" in caplog.text
    assert report.engine == tmp_path / "bottle.fp16.sm90.plan" and report.engine.read_bytes() == b"PLAN"
    assert report.network_flags == flags and report.tensorrt_version == version
    assert cache.read_bytes() == b"+tuned"

    here = Machine(torch="2.13.0", tensorrt=version, gpu=MACHINE.gpu, compute_capability="9.0")
    side = Sidecar.load(report.engine, machine=here)
    assert (side.format, side.precision, side.device, side.source_onnx) == ("plan", "fp16", "cuda", "bottle.fp16.onnx")
    assert (side.tensorrt_version, side.gpu, side.compute_capability, side.batch) == (version, MACHINE.gpu, "9.0", BatchRange(1, 4, 16))
    assert side.command == f"edgefreq build {onnx} --format plan --batches 1,4,16 --out {report.engine}"
    assert side.source_run == "/runs/bottle"

    trt.calls.clear()
    build_plan(onnx, batch=BatchRange(1, 4, 16), timing_cache=cache, trt=trt, machine=MACHINE)
    assert ("config.create_timing_cache", b"+tuned") in trt.calls  # the persistent cache is loaded back


def test_build_refusals(tmp_path):
    onnx = onnx_export(tmp_path)
    trt = FakeTensorRT("10.3.0")
    with pytest.raises(UserError, match="is the fp16 export; for a int8 engine build its int8 export"):
        build_plan(onnx, precision="int8", trt=trt, machine=MACHINE)
    with pytest.raises(UserError, match="this machine has none"):
        build_plan(onnx, trt=trt, machine=Machine(torch="2.13.0"))
    with pytest.raises(UserError, match="must end in .plan"):
        build_plan(onnx, tmp_path / "bottle.engine", trt=trt, machine=MACHINE)
    with pytest.raises(UserError, match="would overwrite bottle.fp16.yaml"):
        build_plan(onnx, tmp_path / "bottle.fp16.plan", trt=trt, machine=MACHINE)
    with pytest.raises(UserError, match="cannot parse .*In node 3 \\(Conv\\): unsupported attribute"):
        build_plan(onnx, trt=FakeTensorRT("11.1.0", parse_ok=False), timing_cache=tmp_path / "c", machine=MACHINE)
    with pytest.raises(UserError, match="could not build .*out of workspace"):
        build_plan(onnx, trt=FakeTensorRT("11.1.0", plan=None), timing_cache=tmp_path / "c", machine=MACHINE)
    with pytest.raises(UserError, match="TensorRT 8.6.1 is too old"):
        build_plan(onnx, trt=FakeTensorRT("8.6.1"), machine=MACHINE)
    onnx.write_bytes(b"changed")
    with pytest.raises(UserError, match="does not match its sidecar"):
        build_plan(onnx, trt=trt, machine=MACHINE)
    assert not list(tmp_path.glob("*.plan"))


# --- the runtime: buffers, shapes, enqueue -----------------------------------------------------


def plan_with_sidecar(tmp_path: Path, max_batch: int) -> tuple[Path, Sidecar]:
    plan = tmp_path / "bottle.sm90.plan"
    plan.write_bytes(b"PLAN")
    side = Sidecar(
        format="plan", engine=plan.name, sha256="", model="ocrgan", preprocess=SPEC, batch=BatchRange(1, 2, max_batch),
        device="cuda", tensorrt_version="10.3.0", gpu=MACHINE.gpu, compute_capability="9.0",
    ).with_engine(plan, command=f"edgefreq build bottle.onnx --format plan --out {plan.name}")
    side.write(sidecar_path(plan))
    return plan, Sidecar.load(plan, machine=Machine(torch="2.13.0", tensorrt="10.3.0", gpu=MACHINE.gpu, compute_capability="9.0"))


def test_backend_binds_buffers_and_sets_shapes_per_chunk(tmp_path):
    trt = FakeTensorRT("10.3.0")
    engine = FakeEngine(trt)
    fake_runtime(trt, engine)
    plan, side = plan_with_sidecar(tmp_path, max_batch=2)
    backend = TensorRTBackend(plan, side, trt=trt, device="cpu")
    assert (backend.name, backend.max_batch, backend.device) == ("tensorrt", 2, "cpu")
    assert backend.engine_id == f"bottle.sm90.plan@{side.sha256[:12]}"
    rng = np.random.default_rng(0)
    bands = [rng.standard_normal((5, SPEC.channels, *SPEC.size)).astype(np.float32) for _ in range(2)]
    trt.calls.clear()
    score, amap = backend.infer([bands[0], torch.from_numpy(bands[1])])  # numpy and torch bands alike
    np.testing.assert_allclose(score, (bands[0] + bands[1]).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(amap, (bands[0] * bands[1]).mean(axis=1), rtol=1e-5)
    shapes = [c[2][0] for c in trt.calls if c[0] == "context.set_input_shape"]
    assert shapes == [2, 2, 2, 2, 1, 1]  # chunks of max_batch, every input set per chunk
    assert sum(c[0] == "context.execute_async_v3" for c in trt.calls) == 3


def test_backend_refuses_foreign_engines(tmp_path):
    plan, side = plan_with_sidecar(tmp_path, max_batch=2)
    trt = FakeTensorRT("10.3.0")
    fake_runtime(trt, None)
    with pytest.raises(UserError, match="cannot load .*: rebuild with `edgefreq build bottle.onnx --format plan --out bottle.sm90.plan`"):
        TensorRTBackend(plan, side, trt=trt, device="cpu")
    engine = FakeEngine(trt)
    engine.names = ("input", "band1", "score", "amap")
    fake_runtime(trt, engine)
    with pytest.raises(UserError, match="do not match its sidecar"):
        TensorRTBackend(plan, side, trt=trt, device="cpu")
    fake_runtime(trt, FakeEngine(trt))
    backend = TensorRTBackend(plan, side, trt=trt, device="cpu")
    with pytest.raises(UserError, match="takes bands of N x 3 x 8 x 6"):
        backend.infer([np.zeros((1, 3, 8, 8), np.float32)] * 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("tensorrt") is None, reason="needs CUDA and TensorRT")
def test_real_tensorrt_plan_matches_onnxruntime(tmp_path):
    from edgefreq.export.onnx import export_onnx, random_bands
    from edgefreq.models import ModelConfig, build_model
    from edgefreq.runtime.backends import open_backend

    spec = Preprocess(size=(32, 32), levels=2)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="ocrgan", ngf=4, ndf=4), 3, 2, spec.size).eval()
    onnx = export_onnx(model, spec, None, tmp_path / "bottle.onnx", kind="ocrgan").engine
    plan = build_plan(onnx, batch=BatchRange(1, 4, 8), timing_cache=tmp_path / "cache").engine
    bands = random_bands(spec, 6)
    with open_backend(onnx) as ref, open_backend(plan) as trt_backend:
        expected, got = ref.infer(bands), trt_backend.infer(bands)
        again = trt_backend.infer(bands)  # second call per batch size: CUDA graph replay
    for e, g, a in zip(expected, got, again):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(a, g, rtol=1e-6, atol=1e-6)


# --- TensorRT-RTX: the same network path, targets instead of a GPU ---------------------------


RTX_MACHINE = Machine(torch="2.13.0", gpu="NVIDIA GeForce RTX 4070", compute_capability="8.9", tensorrt_rtx="1.7.1.116")


def test_rtx_targets_and_names():
    assert parse_targets(None) == RTX_TARGETS == ("8.0", "8.6", "8.9", "12.0")
    assert parse_targets("8.6, sm89,SM_120,sm86") == ("8.6", "8.9", "12.0")
    assert parse_targets("75") == ("7.5",)
    for bad in ("ampere", "8.", "sm", "8.6.1"):
        with pytest.raises(UserError, match="--target takes compute capabilities like 8.6,8.9"):
            parse_targets(bad)
    assert default_rtx_path("out/bottle.fp16.onnx", RTX_TARGETS) == Path("out/bottle.fp16.sm80-86-89-120.rtx")
    assert default_rtx_path("bottle.onnx", ("8.6",)) == Path("bottle.sm86.rtx")
    assert check_version("1.7.1.116", TENSORRT_RTX) == (1, 7, 1)
    with pytest.raises(UserError, match="TensorRT-RTX 0.9 is too old"):
        check_version("0.9", TENSORRT_RTX)
    assert network_flags(FakeTensorRT("1.7.1"), (1, 7, 1), TENSORRT_RTX) == 0  # always strongly typed


def test_rtx_build_shares_the_network_path_and_needs_no_gpu(tmp_path):
    trt = FakeTensorRT("1.7.1.116")
    onnx = onnx_export(tmp_path)
    report = build_rtx(onnx, batch=BatchRange(1, 4, 16), targets=("8.6", "8.9"), workspace_mb=512, trt=trt)
    shape = (SPEC.channels, *SPEC.size)
    assert trt.calls == [
        ("Builder",),
        ("builder.create_network", 0),
        ("parser.parse_from_file", "bottle.fp16.onnx"),
        ("config.set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 512 << 20),
        ("profile.set_shape", "band0", (1, *shape), (4, *shape), (16, *shape)),
        ("profile.set_shape", "band1", (1, *shape), (4, *shape), (16, *shape)),
        ("config.add_optimization_profile",),
        ("config.num_compute_capabilities", 2),
        ("config.set_compute_capability", trt.ComputeCapability.SM86, 0),
        ("config.set_compute_capability", trt.ComputeCapability.SM89, 1),
        ("builder.build_serialized_network",),
    ]  # the plan's sequence up to the profile (define_network), then targets instead of a timing cache
    assert report.engine == tmp_path / "bottle.fp16.sm86-89.rtx" and report.engine.read_bytes() == b"PLAN"
    assert (report.targets, report.tensorrt_version, report.timing_cache) == (("8.6", "8.9"), "1.7.1.116", None)
    side = Sidecar.load(report.engine, machine=RTX_MACHINE)
    assert (side.format, side.precision, side.device, side.source_onnx) == ("rtx", "fp16", "cuda", "bottle.fp16.onnx")
    assert (side.tensorrt_version, side.targets, side.gpu, side.compute_capability) == ("1.7.1.116", ("8.6", "8.9"), None, None)
    assert side.command == f"edgefreq build {onnx} --format rtx --target 8.6,8.9 --batches 1,4,16 --out {report.engine}"


def test_rtx_engine_refused_where_it_cannot_run(tmp_path):
    report = build_rtx(onnx_export(tmp_path), targets=("8.6", "8.9"), trt=FakeTensorRT("1.7.1.116"))
    cases = [
        (Machine(torch="2.13.0", gpu="NVIDIA GeForce RTX 4070", compute_capability="8.9"), "TensorRT-RTX is not installed"),
        (Machine(torch="2.13.0", gpu="NVIDIA GeForce RTX 4070", compute_capability="8.9", tensorrt_rtx="1.8.0.1"),
         "built with TensorRT-RTX 1.7.1.116, this machine has 1.8.0.1"),
        (Machine(torch="2.13.0", tensorrt_rtx="1.7.1.116"), "for an RTX GPU .*this machine has no CUDA GPU"),
        (MACHINE.__class__(torch="2.13.0", gpu=MACHINE.gpu, compute_capability="9.0", tensorrt_rtx="1.7.1.116"),
         "runs on compute capability 8.6, 8.9, this machine's NVIDIA H100 80GB HBM3 is 9.0: rebuild it with `edgefreq build bottle.fp16.onnx --format rtx --target 9.0`"),
    ]
    for machine, message in cases:
        with pytest.raises(UserError, match=message):
            Sidecar.load(report.engine, machine=machine)


def test_rtx_build_refusals(tmp_path):
    onnx = onnx_export(tmp_path)
    trt = FakeTensorRT("1.7.1.116")
    with pytest.raises(UserError, match=r"cannot build for compute capability 9.0; it builds for 7.5, 8.0, 8.6, 8.9, 12.0"):
        build_rtx(onnx, targets=("9.0",), trt=trt)
    with pytest.raises(UserError, match="needs at least one target"):
        build_rtx(onnx, targets=(), trt=trt)
    with pytest.raises(UserError, match="is the fp16 export; for a int8 engine build its int8 export"):
        build_rtx(onnx, precision="int8", trt=trt)
    with pytest.raises(UserError, match="a TensorRT-RTX engine must end in .rtx"):
        build_rtx(onnx, tmp_path / "bottle.plan", trt=trt)
    with pytest.raises(UserError, match="cannot parse .*In node 3 \\(Conv\\): unsupported attribute"):
        build_rtx(onnx, trt=FakeTensorRT("1.7.1.116", parse_ok=False))
    with pytest.raises(UserError, match="TensorRT-RTX 1.7.1.116 could not build .*out of workspace"):
        build_rtx(onnx, trt=FakeTensorRT("1.7.1.116", plan=None))
    assert not list(tmp_path.glob("*.rtx"))


def test_rtx_verb_without_the_library(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    onnx = onnx_export(tmp_path, "bottle.onnx", "fp32")
    assert main(["build", str(onnx), "--format", "rtx"]) != 0
    assert capsys.readouterr().err == f"edgefreq build: error: {TENSORRT_RTX.install}\n"
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["build", str(onnx), "--format", "pt2", "--target", "8.6"]) != 0
    assert capsys.readouterr().err == "edgefreq build: error: --target is for --format rtx\n"
    assert not list(tmp_path.glob("*.rtx"))


def test_rtx_backend_keeps_its_runtime_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    trt = FakeTensorRT("1.7.1.116")
    report = build_rtx(onnx_export(tmp_path), batch=BatchRange(1, 2, 2), trt=trt)
    fake_runtime(trt, FakeEngine(trt))
    side = Sidecar.load(report.engine, machine=RTX_MACHINE)
    cache = runtime_cache_path(side.sha256, "0.0")  # device="cpu": no GPU to name
    assert cache == tmp_path / "cache" / "edgefreq" / f"rtx-{side.sha256[:16]}-sm00.runtime"

    trt.calls.clear()
    backend = RTXBackend(report.engine, side, trt=trt, device="cpu")
    assert backend.name == "rtx"
    context_calls = [c for c in trt.calls if c[0] == "engine.create_execution_context"]
    assert len(context_calls) == 1 and context_calls[0][1] is not None  # made with the runtime config
    assert not any(c[0] == "cache.deserialize" for c in trt.calls)  # nothing to load the first time
    bands = [np.ones((2, SPEC.channels, *SPEC.size), np.float32)] * 2
    np.testing.assert_allclose(backend.infer(bands)[0], [2.0, 2.0])
    backend.close()
    assert cache.read_bytes() == b"KERNELS+compiled"

    trt.calls.clear()
    RTXBackend(report.engine, side, trt=trt, device="cpu").close()
    assert ("cache.deserialize", b"KERNELS+compiled") in trt.calls  # the next start loads what the last one compiled
    assert cache.read_bytes() == b"KERNELS+compiled+compiled"

    cache.write_bytes(b"from another GPU")
    trt.calls.clear()
    RTXBackend(report.engine, side, trt=trt, device="cpu").close()  # refused by the library: compiled anew
    assert ("cache.deserialize", b"from another GPU") in trt.calls
    assert cache.read_bytes() == b"KERNELS+compiled"
