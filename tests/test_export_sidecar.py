"""The sidecar: round trip and every refusal (each a one-line UserError that says what to do)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgefreq.calibration import Calibration
from edgefreq.errors import UserError
from edgefreq.export.sidecar import BatchRange, Machine, Sidecar, engine_format, file_sha256, sidecar_path
from edgefreq.kernels import Preprocess

PLAN_MACHINE = Machine(torch="2.13.0+cu128", tensorrt="10.3.0", gpu="Orin", compute_capability="8.7")


def make_engine(tmp_path: Path, name: str, **fields) -> Path:
    """A stand-in engine file (bytes) and its sidecar; the sidecar does not care what the bytes are."""
    engine = tmp_path / name
    engine.write_bytes(b"engine bytes " + name.encode())
    calibration = Calibration.from_scores(np.linspace(1.0, 2.0, 25))
    side = Sidecar(
        format=engine_format(engine),
        engine=engine.name,
        sha256="",
        model="ocrgan",
        preprocess=Preprocess(size=(64, 48), roi=(10, 20, 300, 200), channels=1, mean=(0.4,), std=(0.2,), levels=3),
        inputs=("band0", "band1", "band2"),
        calibration=calibration,
        command=f"edgefreq build bottle.onnx --format plan --out {name}",
        **fields,
    ).with_engine(engine)
    side.write(sidecar_path(engine))
    return engine


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_round_trip_keeps_every_field(tmp_path):
    engine = make_engine(tmp_path, "bottle.onnx", batch=BatchRange(1, 1, None), source_run="/runs/bottle")
    loaded = Sidecar.load(engine)
    assert loaded == Sidecar.read(engine)
    assert loaded.sha256 == file_sha256(engine)
    assert loaded.preprocess == Preprocess(size=(64, 48), roi=(10, 20, 300, 200), channels=1, mean=(0.4,), std=(0.2,), levels=3)
    assert loaded.calibration.threshold == pytest.approx(2.1)
    assert loaded.calibration.range.quantile(0.99) == pytest.approx(1.99)
    assert loaded.batch == BatchRange(1, 1, None)
    assert loaded.source_run == "/runs/bottle" and loaded.format == "onnx" and loaded.precision == "fp32"
    assert loaded.created_at and loaded.edgefreq_version


def test_sidecar_names():
    assert sidecar_path("a/bottle.onnx") == Path("a/bottle.yaml")
    assert sidecar_path("bottle.int8.onnx") == Path("bottle.int8.yaml")
    assert sidecar_path("bottle.fp16.sm87.plan") == Path("bottle.fp16.sm87.yaml")
    with pytest.raises(UserError, match="unknown engine type '.engine'"):
        engine_format("bottle.engine")


def test_missing_engine_and_missing_sidecar(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Sidecar.load(tmp_path / "nothing.onnx")
    engine = tmp_path / "bare.onnx"
    engine.write_bytes(b"x")
    with pytest.raises(UserError) as exc:
        Sidecar.load(engine)
    assert "has no sidecar bare.yaml" in one_line(exc)


def test_malformed_yaml(tmp_path):
    engine = make_engine(tmp_path, "bottle.onnx")
    sidecar_path(engine).write_text("format: onnx\nengine: [unclosed\n")
    with pytest.raises(UserError) as exc:
        Sidecar.load(engine)
    assert "not valid YAML" in one_line(exc)


def misspelled_key(data: dict) -> None:
    data["threshhold"] = 3.0


def quantiles_without_the_median(data: dict) -> None:
    data["calibration"]["range"]["quantiles"] = {0.9: 1.0}


def newer_schema(data: dict) -> None:
    data["schema"] = 99


@pytest.mark.parametrize(("edit", "message"), [
    (misspelled_key, "unknown key 'threshhold'"),
    (quantiles_without_the_median, "median"),
    (newer_schema, "upgrade edgefreq"),
])
def test_an_edited_sidecar_is_refused(tmp_path, edit, message):
    engine = make_engine(tmp_path, "bottle.onnx")
    data = yaml.safe_load(sidecar_path(engine).read_text())
    edit(data)
    sidecar_path(engine).write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as exc:
        Sidecar.load(engine)
    assert message in one_line(exc)


def test_sha256_mismatch_says_how_to_rebuild(tmp_path):
    engine = make_engine(tmp_path, "bottle.onnx")
    engine.write_bytes(b"another engine")
    with pytest.raises(UserError) as exc:
        Sidecar.load(engine)
    message = one_line(exc)
    assert message.startswith(f"engine {engine} does not match its sidecar (sha256 ")
    assert "re-export with `edgefreq build bottle.onnx --format plan --out bottle.onnx`" in message


def test_format_mismatch(tmp_path):
    engine = make_engine(tmp_path, "bottle.onnx")
    plan = tmp_path / "bottle.plan"
    plan.write_bytes(engine.read_bytes())
    with pytest.raises(UserError, match="describes a onnx engine, but bottle.plan is a plan file"):
        Sidecar.load(plan, machine=PLAN_MACHINE)


def plan_engine(tmp_path: Path) -> Path:
    return make_engine(
        tmp_path,
        "bottle.sm87.plan",
        batch=BatchRange(1, 8, 32),
        device="cuda",
        tensorrt_version="10.3.0",
        gpu="Orin",
        compute_capability="8.7",
        source_onnx="bottle.onnx",
    )


def test_plan_on_its_own_machine_loads(tmp_path):
    side = Sidecar.load(plan_engine(tmp_path), machine=PLAN_MACHINE)
    assert (side.tensorrt_version, side.gpu, side.compute_capability, side.batch.max) == ("10.3.0", "Orin", "8.7", 32)


def test_plan_from_another_tensorrt_version(tmp_path):
    engine = plan_engine(tmp_path)
    with pytest.raises(UserError) as exc:
        Sidecar.load(engine, machine=replace(PLAN_MACHINE, tensorrt="11.1.0"))
    message = one_line(exc)
    assert "built with TensorRT 10.3.0, this machine has 11.1.0" in message
    assert "`edgefreq build bottle.onnx --format plan --out bottle.sm87.plan`" in message


def test_plan_from_another_gpu(tmp_path):
    engine = plan_engine(tmp_path)
    with pytest.raises(UserError) as exc:
        Sidecar.load(engine, machine=replace(PLAN_MACHINE, gpu="NVIDIA H100", compute_capability="9.0"))
    message = one_line(exc)
    assert "built on Orin (compute capability 8.7), this machine has NVIDIA H100 (9.0)" in message
    assert "edgefreq build bottle.onnx --format plan" in message
    with pytest.raises(UserError, match="this machine has Orin-NX"):
        Sidecar.load(engine, machine=replace(PLAN_MACHINE, gpu="Orin-NX"))


def test_plan_without_tensorrt_or_gpu(tmp_path):
    engine = plan_engine(tmp_path)
    with pytest.raises(UserError, match=r"^TensorRT is not installed: pip install 'edgefreq\[tensorrt\]'"):
        Sidecar.load(engine, machine=replace(PLAN_MACHINE, tensorrt=None))
    with pytest.raises(UserError, match="this machine has no CUDA GPU"):
        Sidecar.load(engine, machine=replace(PLAN_MACHINE, gpu=None, compute_capability=None))


def test_pt2_torch_version_and_gpu(tmp_path):
    cpu = make_engine(tmp_path, "bottle.cpu.pt2", device="cpu", torch_version="2.13.0+cpu", batch=BatchRange(1, 8, 32))
    assert Sidecar.load(cpu, machine=Machine(torch="2.13.0+cu128")).device == "cpu"  # the local tag does not matter
    with pytest.raises(UserError, match="built with torch 2.13.0\\+cpu, this machine has 2.14.0"):
        Sidecar.load(cpu, machine=Machine(torch="2.14.0"))
    gpu = make_engine(tmp_path, "bottle.sm87.pt2", device="cuda", torch_version="2.13.0", gpu="Orin", compute_capability="8.7")
    with pytest.raises(UserError, match="this machine has no CUDA GPU"):
        Sidecar.load(gpu, machine=Machine(torch="2.13.0"))


def test_invalid_values():
    with pytest.raises(UserError, match="min <= opt <= max"):
        BatchRange(4, 2, 8)
    assert BatchRange.parse("1,8,32") == BatchRange(1, 8, 32)
    assert BatchRange.parse("16") == BatchRange(1, 16, 16)
    with pytest.raises(UserError, match="--batches must be"):
        BatchRange.parse("1,x")
    with pytest.raises(UserError, match="precision must be one of"):
        Sidecar(format="onnx", engine="a.onnx", sha256="", model="ocrgan", precision="int4")
    with pytest.raises(UserError, match="2 band inputs for 3 FD levels"):
        Sidecar(format="onnx", engine="a.onnx", sha256="", model="ocrgan", preprocess=Preprocess(levels=3))
