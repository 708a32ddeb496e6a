"""Real TensorRT-RTX builds on the CPU: the shipped models must parse and build (CI installs tensorrt-rtx).

TensorRT-RTX builds engines ahead of time without a GPU through the same ONNX -> network code as
TensorRT plans (export/tensorrt.py define_network), so these builds check, on every CI run, that
the parser and the builder take every layer edgefreq exports: the embedded default as it ships,
and the FP16 export (what runs on a GPU) of every config in edgefreq/configs/ (found by globbing, so
a new config or a new op inside the graph is covered without touching this file), at the config's
own size and widths, with seeded random weights (parsing and building do not depend on the values).
A layer the parser rejects fails the build with its node name and operator.

Skipped when tensorrt_rtx is not installed, failed instead under EDGEFREQ_REQUIRE_SERVERS=1 (CI).
The engines themselves need an RTX GPU to run; that is not tested here.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from conftest import skip_or_fail
from edgefreq.cli import main
from edgefreq.errors import UserError
from edgefreq.export.onnx import export_onnx, random_bands
from edgefreq.export.sidecar import BatchRange, Sidecar, band_names, sidecar_path
from edgefreq.export.tensorrt import RTX_TARGETS, TENSORRT_RTX, build_rtx
from edgefreq.kernels import Preprocess
from edgefreq.models import build_model
from edgefreq.rundir import CONFIGS_DIR, load_config

PACKAGE = Path(__file__).resolve().parents[1] / "edgefreq"
CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))

pytestmark = pytest.mark.rtx


@pytest.fixture(scope="module")
def rtx() -> ModuleType:
    try:
        return importlib.import_module(TENSORRT_RTX.module)
    except ImportError:
        skip_or_fail("tensorrt-rtx is not installed (pip install 'edgefreq[rtx]')")


def test_the_shipped_configs_are_found():
    assert {"edge", "embedded", "paper"} <= {p.stem for p in CONFIGS}


def test_embedded_default_builds_through_the_cli(rtx, tmp_path, capsys):
    for name in ("default.onnx", "default.yaml"):
        shutil.copy(PACKAGE / "embedded" / name, tmp_path / name)
    assert main(["build", str(tmp_path / "default.onnx"), "--format", "rtx", "--target", "8.6,8.9"]) == 0
    engine = tmp_path / "default.sm86-89.rtx"
    assert f"wrote {engine}" in capsys.readouterr().out
    side = Sidecar.read(engine)
    assert (side.format, side.precision, side.targets, side.tensorrt_version) == ("rtx", "fp32", ("8.6", "8.9"), rtx.__version__)
    assert side.calibration is not None  # the shipped calibration travels with the engine
    assert engine.stat().st_size > 1 << 20


def test_a_rejected_layer_fails_with_its_name(rtx, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    spec = Preprocess(size=(8, 8), levels=2)
    bands = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, 8, 8]) for n in band_names(2)]
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
               helper.make_tensor_value_info("amap", TensorProto.FLOAT, ["N", 8, 8])]
    nodes = [
        helper.make_node("Add", ["band0", "band1"], ["image"], name="sum_bands"),
        helper.make_node("Frobnicate", ["image"], ["err"], name="frob_layer", domain="com.example"),
        helper.make_node("ReduceMean", ["err"], ["amap"], name="channel_mean", axes=[1], keepdims=0),
        helper.make_node("ReduceMax", ["amap"], ["score"], name="image_max", axes=[1, 2], keepdims=0),
    ]
    model = helper.make_model(helper.make_graph(nodes, "bad", bands, outputs),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    Sidecar(format="onnx", engine=path.name, sha256="", model="ocrgan", preprocess=spec).with_engine(path).write(sidecar_path(path))
    with pytest.raises(UserError, match=r"TensorRT-RTX .* cannot parse .*bad.onnx: .*frob_layer.*Frobnicate"):
        build_rtx(path)
    assert not list(tmp_path.glob("*.rtx"))


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_builds(rtx, tmp_path, config):
    cfg = load_config(str(config))
    spec = cfg.preprocess
    torch.manual_seed(0)
    model = build_model(cfg.model, spec.channels, spec.levels, spec.size).eval()
    onnx = export_onnx(model, spec, None, tmp_path / f"{config.stem}.fp16.onnx", kind=cfg.model.kind, fp16=True,
                       sample_bands=random_bands(spec, 2)).engine
    report = build_rtx(onnx, batch=BatchRange(1, 8, 32))
    side = Sidecar.read(report.engine)
    assert report.engine.name == f"{config.stem}.fp16.sm80-86-89-120.rtx"
    assert (side.format, side.precision, side.targets, side.preprocess) == ("rtx", "fp16", RTX_TARGETS, spec)
    assert side.batch == BatchRange(1, 8, 32) and side.source_onnx == onnx.name
    assert np.isfinite(report.seconds)
    for path in (onnx, report.engine):  # the paper model's files are ~320 MB each: do not keep them in pytest's tmp
        path.unlink()
