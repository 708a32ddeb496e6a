"""INT8 through explicit Q/DQ (DESIGN.md decision 9): NAME.onnx -> NAME.int8.onnx + its sidecar.

TensorRT 11 has no implicit INT8 calibrators, so the quantization lives in the graph: ONNX
Runtime's static quantization measures activation ranges on normal calibration images (the
engine's own inputs, `calibration_batches`) and writes QuantizeLinear / DequantizeLinear pairs.
Choices, all for what TensorRT's explicit quantization accepts and for the anomaly score:

- QDQ format, signed INT8, symmetric activations and weights (TensorRT's Q/DQ are symmetric,
  zero point 0); weights per output channel (axis 0 for Conv, 1 for ConvTranspose);
- only the inputs of Conv and ConvTranspose are quantized (not their outputs), and every other
  op reads the float tensor even where a conv reads its Q/DQ copy: the score head (band sum,
  reconstruction error, its means, the map smoothing) and Channel Selection stay float, since
  the score *is* a small difference and quantizing it would quantize the decision (quantizing
  the score head's inputs too tripled the drift: 3.0 % mean instead of 1.2 % on 8 images);
- biases stay float (`QuantizeBias: False`): TensorRT cannot dequantize INT32 biases;
- the graph is pre-processed first (shape inference, BatchNorm folded into the convolutions)
  so the quantized weights include the BatchNorm scale.

The result runs on ONNX Runtime's CPU provider, so its score drift against the FP32 model (and
its AUROC) is measured here, before a GPU builds a plan from it. Measured on the MVTec bottle
test set (83 images) with a cpu-budget OCR-GAN (64x64, ngf 8; fp32 AUROC 0.614): INT8 (minmax)
scores move by 1.6 % on average and 5.6 % at most, a shift of +0.4 % (+1.0 % on the calibration
images), AUROC 0.604 (percentile: 0.616). A 1 % shift is a sixth of that run's threshold margin
(max + 0.1 * (max - min)), so the INT8 model is not judged against the FP32 threshold: its
sidecar gets the FP32 calibration shifted by the median INT8 drift on the calibration images
(the FP32 scores are leave-one-out; the INT8 engine's own scores of those images are not).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgefreq.calibration import Calibration
from edgefreq.errors import UserError

from .onnx import run_onnxruntime
from .sidecar import Sidecar, band_names, sidecar_path

QUANTIZED_OPS = ("Conv", "ConvTranspose")
METHODS = ("minmax", "percentile")


@dataclass(frozen=True)
class Drift:
    """INT8 (or any) model against the FP32 model on the same bands."""

    count: int  # images compared
    score_max_rel: float  # max |s - s32| / max |s32|
    score_mean_rel: float  # mean |s - s32| / |s32|
    score_corr: float  # Pearson correlation of the scores (nan for one image)
    amap_max_rel: float  # max |m - m32| / max |m32|

    def summary(self) -> str:
        return (
            f"score drift vs fp32 on {self.count} images: max {self.score_max_rel:.2%}, mean {self.score_mean_rel:.2%}, "
            f"correlation {self.score_corr:.4f}; map max {self.amap_max_rel:.2%}"
        )


@dataclass(frozen=True)
class Int8Report:
    engine: Path
    sidecar: Path
    seconds: float
    images: int  # calibration images the ranges were measured on
    drift: Drift | None  # on `check_bands` when given
    calibration: Calibration | None  # the INT8 model's own (None when the fp32 export has none)


class _BandReader:
    """onnxruntime CalibrationDataReader over band batches, one image per feed (the histogram
    calibrators stack feeds and need them all the same shape), with a progress bar."""

    def __init__(self, batches: Iterable[Sequence[np.ndarray]], levels: int) -> None:
        self.names = band_names(levels)
        self.batches = iter(batches)
        self.pending: list[dict[str, np.ndarray]] = []
        self.images = 0
        self.bar = tqdm(desc="int8 calibration", unit="img", leave=False)

    def fill(self) -> bool:
        """Split the next batch into pending feeds; False when the batches are exhausted."""
        while not self.pending:
            batch = next(self.batches, None)
            if batch is None:
                return False
            if len(batch) != len(self.names):
                raise UserError(f"calibration batch has {len(batch)} bands, the model takes {len(self.names)}")
            arrays = [np.ascontiguousarray(b, dtype=np.float32) for b in batch]
            self.pending = [{name: a[i : i + 1] for name, a in zip(self.names, arrays)} for i in range(len(arrays[0]))]
        return True

    def get_next(self) -> dict[str, np.ndarray] | None:
        if not self.fill():
            self.bar.close()
            return None
        self.images += 1
        self.bar.update()
        return self.pending.pop(0)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization warns on the root logger and its histogram calibrators print."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _float_for_unquantized_ops(path: Path) -> None:
    """Rewire every op that is not quantized to read the float tensor, not its Q/DQ copy.

    ONNX Runtime quantizes a tensor for all its consumers once one of them is quantized: the
    band sum and the reconstruction feed both the discriminator's first conv and the score's
    subtraction, so the score itself would see INT8-rounded images. After this, Q/DQ pairs sit
    only on the inputs of Conv / ConvTranspose, where TensorRT wants them.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    quantize_input = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    float_of = {n.output[0]: quantize_input[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in quantize_input}
    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            for i, name in enumerate(node.input):
                node.input[i] = float_of.get(name, name)
    while True:  # drop Q/DQ pairs nobody reads any more
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    onnx.save(model, str(path))


def measure_drift(reference: str | Path, candidate: str | Path, bands: Sequence[np.ndarray]) -> Drift:
    """Run both ONNX models on `bands` (ONNX Runtime, CPU) and compare candidate to reference."""
    n = len(bands[0])
    ref_score, ref_map = run_onnxruntime(reference, bands, [n])[n]
    score, amap = run_onnxruntime(candidate, bands, [n])[n]
    ref_score, score = ref_score.astype(np.float64), score.astype(np.float64)
    err = np.abs(score - ref_score)
    corr = float(np.corrcoef(score, ref_score)[0, 1]) if n > 1 else float("nan")
    return Drift(
        count=n,
        score_max_rel=float(err.max() / max(np.abs(ref_score).max(), 1e-12)),
        score_mean_rel=float(np.mean(err / np.maximum(np.abs(ref_score), 1e-12))),
        score_corr=corr,
        amap_max_rel=float(np.abs(amap - ref_map).max() / max(float(np.abs(ref_map).max()), 1e-12)),
    )


def int8_path(onnx_path: str | Path) -> Path:
    """bottle.onnx -> bottle.int8.onnx."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")


def score_batches(path: str | Path, batches: Iterable[Sequence[np.ndarray]]) -> np.ndarray:
    """Scores of an ONNX model (ONNX Runtime, CPU) over band batches."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = []
    for batch in batches:
        scores.append(session.run(["score"], {name: np.ascontiguousarray(b, np.float32) for name, b in zip(band_names(len(batch)), batch)})[0])
    return np.concatenate(scores)


def shifted(calibration: Calibration, delta: float) -> Calibration:
    """The calibration of scores moved by `delta`: range, quantiles and threshold shift (every
    policy is shift-equivariant); the false-reject estimate stays the FP32 one's."""
    r = calibration.range
    normal = replace(r, min=r.min + delta, max=r.max + delta, mean=r.mean + delta,
                     quantiles={q: v + delta for q, v in r.quantiles.items()})
    return Calibration(normal, calibration.policy, calibration.policy.threshold(normal), calibration.false_reject_rate)


def quantize_int8(
    onnx_path: str | Path,
    batches: Callable[[], Iterable[Sequence[np.ndarray]]],
    out_path: str | Path | None = None,
    *,
    method: str = "minmax",
    check_bands: Sequence[np.ndarray] | None = None,
    command: str = "",
) -> Int8Report:
    """Quantize the FP32 export `onnx_path` to INT8 Q/DQ at `out_path` (default NAME.int8.onnx).

    `batches()` yields lists of band arrays (`export.calibration_images.calibration_batches`) of normal images
    the model never trained on; it is called three times: the activation ranges are measured on
    them, then the INT8 and the FP32 models score them, and the INT8 sidecar gets the FP32
    calibration shifted by the median INT8 - FP32 score difference (`shifted`): INT8 shifts the
    scores by a few percent (see the module's measurements), the size of a threshold margin. The
    FP32 calibration's scores are leave-one-out (the score statistics inside the engine did not see
    the image they score); the INT8 engine carries statistics fitted on these very images, so its
    own scores of them would be in-sample and its threshold optimistic: only the drift is taken. With `check_bands`, the
    score drift against the FP32 model is measured on them and reported.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path = Path(onnx_path)
    out_path = int8_path(onnx_path) if out_path is None else Path(out_path)
    source = Sidecar.load(onnx_path)
    if source.format != "onnx" or source.precision != "fp32":
        raise UserError(f"{onnx_path}: INT8 quantization starts from the fp32 ONNX export, this one is {source.precision} {source.format}")
    if method not in METHODS:
        raise UserError(f"INT8 calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    if not out_path.parent.is_dir():
        raise UserError(f"{out_path.parent}: folder not found; create it or choose another output path")
    if sidecar_path(out_path) == sidecar_path(onnx_path):
        raise UserError(f"{out_path}: would overwrite the sidecar of {onnx_path}; choose another name")
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]
    reader = _BandReader(batches(), source.preprocess.levels)
    if not reader.fill():
        raise UserError("no calibration images for INT8 calibration; pass good images the model never trained on")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp, _quiet_quantizer():
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
            },
        )
        _float_for_unquantized_ops(quantized)
        os.replace(quantized, out_path)
    calibration = source.calibration
    if calibration is not None:
        drift = score_batches(out_path, batches()) - score_batches(onnx_path, batches())
        calibration = shifted(calibration, float(np.median(drift)))
    side = source.with_engine(out_path, precision="int8", calibration=calibration, command=command)
    side_path = side.write(sidecar_path(out_path))
    drift = measure_drift(onnx_path, out_path, check_bands) if check_bands is not None else None
    return Int8Report(out_path, side_path, time.perf_counter() - start, reader.images, drift, calibration)
