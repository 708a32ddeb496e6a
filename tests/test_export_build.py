"""`edgefreq build` plumbing that needs no compiler: which ONNX a plan is built from, names, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgefreq.errors import UserError
from edgefreq.export.variants import base_path, onnx_for
from edgefreq.export.inductor import build_pt2, default_pt2_path
from edgefreq.export.sidecar import BatchRange, Machine, Sidecar, sidecar_path
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model

SPEC = Preprocess(size=(32, 32), levels=2)


def stand_in(tmp_path: Path, name: str, precision: str) -> Path:
    path = tmp_path / name
    path.write_bytes(name.encode())
    Sidecar(format="onnx", engine=name, sha256="", model="ocrgan", preprocess=SPEC, precision=precision).with_engine(path).write(sidecar_path(path))
    return path


def test_the_plan_precision_picks_the_sibling_export(tmp_path):
    fp32 = stand_in(tmp_path, "bottle.onnx", "fp32")
    fp16 = stand_in(tmp_path, "bottle.fp16.onnx", "fp16")
    assert base_path(fp16) == tmp_path / "bottle" == base_path(fp32)
    assert onnx_for(fp32, None) == fp32 and onnx_for(fp32, "fp32") == fp32
    assert onnx_for(fp32, "fp16") == fp16 and onnx_for(fp16, "fp32") == fp32
    with pytest.raises(UserError, match=r"no int8 export bottle.int8.onnx next to bottle.onnx: run `edgefreq export RUN --out .*bottle.onnx --int8` first"):
        onnx_for(fp32, "int8")


def test_pt2_names_say_the_device():
    gpu = Machine(torch="2.13.0", gpu="Orin", compute_capability="8.7")
    assert default_pt2_path("out/bottle", "cpu", gpu) == Path("out/bottle.cpu.pt2")
    assert default_pt2_path("runs/bottle.v2", "cuda", gpu) == Path("runs/bottle.v2.sm87.pt2")


def test_pt2_refusals(tmp_path):
    model = build_model(ModelConfig(kind="ocrgan", ngf=4, ndf=4), 3, 2, SPEC.size)
    with pytest.raises(UserError, match="must end in .pt2"):
        build_pt2(model, SPEC, None, tmp_path / "bottle.onnx", kind="ocrgan")
    with pytest.raises(UserError, match="maximum batch size of at least 2"):
        build_pt2(model, SPEC, None, tmp_path / "bottle.cpu.pt2", kind="ocrgan", batch=BatchRange(1, 1, 1))
    with pytest.raises(UserError, match="device must be cpu or cuda"):
        build_pt2(model, SPEC, None, tmp_path / "bottle.cpu.pt2", kind="ocrgan", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="this machine has no CUDA GPU"):
            build_pt2(model, SPEC, None, tmp_path / "bottle.sm87.pt2", kind="ocrgan", device="cuda")
    assert not list(tmp_path.iterdir())


def test_an_engine_runs_where_it_was_built_for_and_another_device_is_refused(tmp_path):
    from edgefreq.runtime.backends import open_backend

    plan = tmp_path / "bottle.fp16.sm87.plan"
    plan.write_bytes(b"plan")
    with pytest.raises(UserError, match=r"bottle.fp16.sm87.plan runs on cuda only .* not on cpu: on the CPU run its .onnx"):
        open_backend(plan, device="cpu")
    pt2 = tmp_path / "bottle.cpu.pt2"
    pt2.write_bytes(b"pt2")
    Sidecar(format="pt2", engine=pt2.name, sha256="", model="ocrgan", preprocess=SPEC, device="cpu",
            torch_version=str(torch.__version__)).with_engine(pt2).write(sidecar_path(pt2))
    with pytest.raises(UserError, match=r"bottle.cpu.pt2 runs on cpu only .* not on cuda: build it again with --device cuda"):
        open_backend(pt2, device="cuda")
