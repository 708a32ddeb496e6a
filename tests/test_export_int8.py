"""INT8 through explicit Q/DQ: what TensorRT's explicit quantization takes, runnable on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgefreq.calibration import Calibration
from edgefreq.export.int8 import QUANTIZED_OPS, int8_path, measure_drift, quantize_int8, score_batches, shifted
from edgefreq.errors import UserError
from edgefreq.export.onnx import export_onnx, random_bands
from edgefreq.export.sidecar import Sidecar
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model
from edgefreq.runtime.backends import open_backend

SPEC = Preprocess(size=(32, 32), levels=2)


def calibration_set(seed: int = 3) -> list[list[np.ndarray]]:
    """Three batches of 4 (the last one 2): batches of unequal size must work for every method."""
    bands = random_bands(SPEC, 10, seed=seed)
    return [[b[i : i + 4] for b in bands] for i in (0, 4, 8)]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="ocrgan", ngf=4, ndf=4), 3, 2, SPEC.size).eval()
    calibration = Calibration.from_scores(np.linspace(1.6, 2.0, 20))
    out = tmp_path_factory.mktemp("int8") / "bottle.onnx"
    return export_onnx(model, SPEC, calibration, out, kind="ocrgan").engine


@pytest.fixture(scope="module")
def int8(fp32):
    return quantize_int8(fp32, calibration_set, check_bands=random_bands(SPEC, 6, seed=9), command="edgefreq export r --out bottle.onnx --int8")


def test_qdq_graph_is_what_tensorrt_takes(int8):
    graph = onnx.load(str(int8.engine)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    quant = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert quant, "no Q/DQ nodes"
    for node in quant:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()  # signed, symmetric
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            assert inits[node.input[0]].dtype == np.int8  # quantized weights; no INT32 biases
    dq_outputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    users = {n.op_type for n in graph.node if dq_outputs & set(n.input)}
    assert users == set(QUANTIZED_OPS)  # the score head (band sum, error, means) sees float tensors only
    assert not any(n.op_type == "BatchNormalization" for n in graph.node)  # folded before quantizing


def test_int8_runs_on_onnxruntime_with_the_fp32_calibration_shifted_by_its_drift(fp32, int8):
    assert int8.engine == int8_path(fp32) and int8.images == 10
    side = Sidecar.load(int8.engine)
    assert (side.precision, side.format) == ("int8", "onnx")
    assert side.command == "edgefreq export r --out bottle.onnx --int8"
    drift = float(np.median(score_batches(int8.engine, calibration_set()) - score_batches(fp32, calibration_set())))
    expected = shifted(Sidecar.load(fp32).calibration, drift)
    assert side.calibration == expected == int8.calibration
    assert np.isclose(expected.threshold - Sidecar.load(fp32).calibration.threshold, drift) and drift != 0
    bands = random_bands(SPEC, 5, seed=11)
    with open_backend(int8.engine) as q, open_backend(fp32) as f:
        score8, amap8 = q.infer(bands)
        score32, _ = f.infer(bands)
    assert score8.shape == (5,) and amap8.shape == (5, 32, 32) and np.isfinite(score8).all()
    drift = measure_drift(fp32, int8.engine, bands)
    assert drift.score_max_rel == pytest.approx(np.abs(score8 - score32).max() / np.abs(score32).max(), rel=1e-5)
    print(int8.drift.summary())
    assert int8.drift.count == 6 and int8.drift.score_max_rel < 0.05 and int8.drift.score_corr > 0.9


def test_percentile_method(fp32, int8, tmp_path):
    report = quantize_int8(fp32, calibration_set, tmp_path / "bottle.percentile.onnx", method="percentile")
    assert report.images == 10 and Sidecar.load(report.engine).precision == "int8"
    assert report.engine.read_bytes() != int8.engine.read_bytes()  # other ranges than minmax


def test_int8_refusals(fp32, int8, tmp_path):
    with pytest.raises(UserError, match="starts from the fp32 ONNX export, this one is int8"):
        quantize_int8(int8.engine, calibration_set, tmp_path / "again.onnx")
    with pytest.raises(UserError, match="method must be one of"):
        quantize_int8(fp32, calibration_set, tmp_path / "x.onnx", method="kl")
    with pytest.raises(UserError, match="no calibration images"):
        quantize_int8(fp32, lambda: iter([]), tmp_path / "x.onnx")
    with pytest.raises(UserError, match="calibration batch has 1 bands, the model takes 2"):
        quantize_int8(fp32, lambda: iter([random_bands(SPEC, 2)[:1]]), tmp_path / "x.onnx")
    with pytest.raises(UserError, match="would overwrite the sidecar"):
        quantize_int8(fp32, calibration_set, fp32.with_name("bottle.pt2"))
