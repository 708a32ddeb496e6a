"""INT8 through explicit Q/DQ (DESIGN.md decision 9): NAME.onnx -> NAME.int8.onnx + its sidecar.

TensorRT 11 has no implicit INT8 calibrators, so the quantization lives in the graph: ONNX
Runtime's static quantization measures activation ranges on normal calibration images (the
engine's own inputs, `calibration_batches`) and writes QuantizeLinear / DequantizeLinear pairs.
Choices, all for what TensorRT's explicit quantization accepts and for the anomaly score:

- QDQ format, signed INT8, symmetric activations and weights (TensorRT's Q/DQ are symmetric,
  zero point 0); weights per output channel (axis 0 for Conv, 1 for ConvTranspose);
- only Conv and ConvTranspose are quantized: the score head (reconstruction error, its means,
  the map smoothing) and Channel Selection stay float, since the score *is* a small difference
  and quantizing it would quantize the decision;
- biases stay float (`QuantizeBias: False`): TensorRT cannot dequantize INT32 biases;
- the graph is pre-processed first (shape inference, BatchNorm folded into the convolutions)
  so the quantized weights include the BatchNorm scale.

The result runs on ONNX Runtime's CPU provider, so its score drift against the FP32 model (and
its AUROC) is measured here, before a GPU builds a plan from it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgefreq.errors import UserError
from edgefreq.export.onnx import run_onnxruntime
from edgefreq.export.sidecar import Sidecar, band_names, sidecar_path

QUANTIZED_OPS = ("Conv", "ConvTranspose")
METHODS = ("minmax", "percentile", "entropy")


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


class _BandReader:
    """onnxruntime CalibrationDataReader over band batches, with a progress bar."""

    def __init__(self, batches: Iterable[Sequence[np.ndarray]], levels: int) -> None:
        self.names = band_names(levels)
        self.batches = iter(batches)
        self.images = 0
        self.bar = tqdm(desc="int8 calibration", unit="img", leave=False)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            self.bar.close()
            return None
        if len(batch) != len(self.names):
            raise UserError(f"calibration batch has {len(batch)} bands, the model takes {len(self.names)}")
        self.images += len(batch[0])
        self.bar.update(len(batch[0]))
        return {name: np.ascontiguousarray(b, dtype=np.float32) for name, b in zip(self.names, batch)}


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


def quantize_int8(
    onnx_path: str | Path,
    batches: Iterable[Sequence[np.ndarray]],
    out_path: str | Path | None = None,
    *,
    method: str = "minmax",
    check_bands: Sequence[np.ndarray] | None = None,
    command: str = "",
) -> Int8Report:
    """Quantize the FP32 export `onnx_path` to INT8 Q/DQ at `out_path` (default NAME.int8.onnx).

    `batches` yields lists of band arrays (`calibration.calibration_batches`): normal images the
    model never trained on. With `check_bands`, the score drift against the FP32 model is
    measured on them and reported.
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
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[method]
    reader = _BandReader(batches, source.preprocess.levels)
    start = time.perf_counter()
    quant_logger = logging.getLogger()  # onnxruntime.quantization warns on the root logger
    level = quant_logger.level
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        quant_logger.setLevel(logging.ERROR)
        try:
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
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
            )
        finally:
            quant_logger.setLevel(level)
        if reader.images == 0:
            raise UserError("no calibration images reached INT8 calibration; pass good images the model never trained on")
        os.replace(quantized, out_path)
    side = source.with_engine(out_path, precision="int8", command=command)
    side_path = side.write(sidecar_path(out_path))
    drift = measure_drift(onnx_path, out_path, check_bands) if check_bands is not None else None
    return Int8Report(out_path, side_path, time.perf_counter() - start, reader.images, drift)
