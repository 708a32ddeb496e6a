"""ONNX export of real (tiny) models: ONNX Runtime vs torch on real images, dynamic batch, FP16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgefreq.calibration import Calibration
from edgefreq.export.calibration_images import calibration_batches
from edgefreq.errors import UserError
from edgefreq.export.onnx import FP16_TOLERANCE, FP32_TOLERANCE, export_onnx, torch_reference
from edgefreq.export.sidecar import Sidecar, file_sha256
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOTTLE = DATA / "mvtec_bottle"
SPEC = Preprocess(size=(32, 32), levels=2)

needs_bottle = pytest.mark.skipif(not BOTTLE.is_dir(), reason=f"{BOTTLE} not found (shared data set absent)")


def tiny_ocrgan(spec: Preprocess = SPEC) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(kind="ocrgan", ngf=4, ndf=4), spec.channels, spec.levels, spec.size).eval()


def bottle_bands(count: int, spec: Preprocess = SPEC) -> list[np.ndarray]:
    """Bands of `count` real bottle images (good and broken), as the CPU runtime makes them."""
    paths = sorted((BOTTLE / "test" / "good").glob("*.png"))[: count // 2] + sorted((BOTTLE / "test" / "broken_large").glob("*.png"))[: count - count // 2]
    return next(calibration_batches(paths, spec, count))


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    if not BOTTLE.is_dir():
        pytest.skip(f"{BOTTLE} not found (shared data set absent)")
    model = tiny_ocrgan()
    bands = bottle_bands(6)
    calibration = Calibration.from_scores(np.linspace(0.1, 0.2, 30))
    out = tmp_path_factory.mktemp("onnx") / "bottle.onnx"
    report = export_onnx(model, SPEC, calibration, out, kind="ocrgan", sample_bands=bands, source_run="/runs/bottle", command="edgefreq export /runs/bottle --out bottle.onnx")
    return model, bands, report


@needs_bottle
def test_onnxruntime_matches_torch_on_real_images(exported):
    model, bands, report = exported
    assert report.check.ok and report.check.batches == (1, 6)
    assert max(report.check.max_rel.values()) <= FP32_TOLERANCE
    session = ort.InferenceSession(str(report.engine), providers=["CPUExecutionProvider"])
    score, amap = session.run(["score", "amap"], {"band0": bands[0], "band1": bands[1]})
    ref_score, ref_amap = torch_reference(model, bands)
    assert relative_error(score, ref_score) <= FP32_TOLERANCE
    assert relative_error(amap, ref_amap) <= FP32_TOLERANCE
    print(f"export {report.seconds:.1f} s; {report.check.summary()}")


@needs_bottle
def test_batch_is_dynamic(exported):
    model, bands, report = exported
    graph = onnx.load(str(report.engine)).graph
    assert [i.name for i in graph.input] == ["band0", "band1"] and [o.name for o in graph.output] == ["score", "amap"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    session = ort.InferenceSession(str(report.engine), providers=["CPUExecutionProvider"])
    ref_score, ref_amap = torch_reference(model, bands)
    for n in (1, 3):
        score, amap = session.run(None, {"band0": bands[0][:n], "band1": bands[1][:n]})
        assert score.shape == (n,) and amap.shape == (n, 32, 32)
        assert relative_error(score, ref_score[:n]) <= FP32_TOLERANCE


@needs_bottle
def test_sidecar_describes_the_export(exported):
    _, _, report = exported
    side = Sidecar.load(report.engine)
    assert report.sidecar == report.engine.with_suffix(".yaml")
    assert side.sha256 == file_sha256(report.engine)
    assert (side.format, side.precision, side.model, side.device) == ("onnx", "fp32", "ocrgan", "any")
    assert side.inputs == ("band0", "band1") and side.outputs == ("score", "amap")
    assert side.preprocess == SPEC and side.batch.max is None
    assert side.calibration.threshold == pytest.approx(0.21)
    assert side.source_run == "/runs/bottle" and side.command == "edgefreq export /runs/bottle --out bottle.onnx"


@needs_bottle
def test_fp16_export_keeps_fp32_io_and_fp32_reductions(tmp_path):
    model = tiny_ocrgan()
    bands = bottle_bands(4)
    report = export_onnx(model, SPEC, None, tmp_path / "bottle.fp16.onnx", kind="ocrgan", fp16=True, sample_bands=bands)
    graph = onnx.load(str(report.engine)).graph
    assert {i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    producers = {out: node for node in graph.node for out in node.output}
    reductions = [n for n in graph.node if n.op_type == "ReduceMean"]
    assert reductions and all(producers[n.input[0]].op_type == "Cast" for n in reductions)
    assert Sidecar.load(report.engine).precision == "fp16"
    assert report.check.ok and max(report.check.max_rel.values()) <= FP16_TOLERANCE
    print(f"fp16 export {report.seconds:.1f} s; {report.check.summary()}")


def test_export_refuses_bad_arguments(tmp_path):
    model = tiny_ocrgan()
    with pytest.raises(UserError, match="must end in .onnx"):
        export_onnx(model, SPEC, None, tmp_path / "bottle.plan", kind="ocrgan")
    with pytest.raises(UserError, match="folder not found"):
        export_onnx(model, SPEC, None, tmp_path / "missing" / "bottle.onnx", kind="ocrgan")
    gray = [np.zeros((2, 1, 32, 32), np.float32)] * 2
    with pytest.raises(UserError, match="bands must all be N x 3 x 32 x 32"):
        export_onnx(model, SPEC, None, tmp_path / "bottle.onnx", kind="ocrgan", sample_bands=gray)
    with pytest.raises(UserError, match="1 band arrays given, the model takes 2"):
        export_onnx(model, SPEC, None, tmp_path / "bottle.onnx", kind="ocrgan", sample_bands=gray[:1])
    assert not list(tmp_path.iterdir())


@needs_bottle
def test_exported_model_has_the_torch_models_auroc_on_the_bottle_test_set(exported):
    """Every bottle test image through ONNX Runtime and torch: the same ranking, the same AUROC."""
    from sklearn.metrics import roc_auc_score

    from edgefreq.data import scan_dataset

    model, _, report = exported
    samples = scan_dataset(BOTTLE).test
    labels = np.array([s.label for s in samples])
    session = ort.InferenceSession(str(report.engine), providers=["CPUExecutionProvider"])
    onnx_scores, torch_scores = [], []
    for bands in calibration_batches([s.path for s in samples], SPEC, 32):
        onnx_scores.append(session.run(["score"], {"band0": bands[0], "band1": bands[1]})[0])
        torch_scores.append(torch_reference(model, bands)[0])
    onnx_auroc = roc_auc_score(labels, np.concatenate(onnx_scores))
    torch_auroc = roc_auc_score(labels, np.concatenate(torch_scores))
    assert len(labels) == 83 and labels.sum() == 63
    assert onnx_auroc == torch_auroc, (onnx_auroc, torch_auroc)
