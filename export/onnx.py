"""ONNX export: bands in -> (score, amap) out, dynamic batch, checked against torch on ONNX Runtime.

    report = export_onnx(model, preprocess, calibration, "bottle.onnx", kind="ocrgan")

writes bottle.onnx + bottle.yaml (the sidecar). The graph takes `levels` inputs band0 (lowest
frequency) .. band{L-1}, each N x C x H x W float32, and returns score (N) and amap (N x H x W),
both float32, for any N: FD stays outside the graph (DESIGN.md decision 1).

Exporter: torch.export-based (`dynamo=True`, the default since torch 2.9) with a `batch`
torch.export.Dim. The TorchScript exporter (`dynamo=False`) exports a toy conv net about 15x
faster here (0.3 s vs 5 s; a trained 64x64 OCR-GAN takes 12-19 s with dynamo on 2 busy cores)
and its graphs run as well, but it is deprecated since torch 2.9 and slated for removal; export
is not on any hot path, so we use the maintained one. It emits opset 18 at the lowest (it
cannot down-convert ReduceMean to 17), which the TensorRT 10.x and 11.x ONNX parsers and ONNX
Runtime all read.

FP16 (the input of TensorRT FP16 plans, DESIGN.md decision 9): TensorRT 11 has no FP16 builder
flag, and a strongly typed network (10.x and 11.x) runs every layer in the type the graph gives
it. So the FP16 graph carries its types: the model is traced in half precision, the band inputs
and both outputs stay float32 (a Cast at each end, so every precision has the same engine I/O
and the runtime keeps one set of float32 buffers), and every ReduceMean / ReduceSum runs in
float32 between two Casts: the score is a mean over C x H x W squared errors, which fp16
accumulation would round visibly. ONNX Runtime on the CPU runs the same graph, so the FP16 model
is checked here against torch (to FP16_TOLERANCE) before any GPU sees it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgefreq.calibration import Calibration
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess

from .sidecar import OUTPUTS, BatchRange, Sidecar, band_names, engine_format, sidecar_path

DEFAULT_OPSET = 18
FP32_TOLERANCE = 1e-4  # ONNX Runtime vs torch, relative to the largest |value| of each output
FP16_TOLERANCE = 1e-2
TOLERANCES = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE}
_REDUCTIONS = ("ReduceMean", "ReduceSum")


class BandsToScore(nn.Module):
    """forward(band0, ..., band{L-1}) -> (score, amap): the engine's signature around model.score.

    With `half`, the bands are cast to float16 for the (half) model and both outputs back to
    float32, so the graph's I/O stays float32.
    """

    def __init__(self, model: nn.Module, half: bool = False) -> None:
        super().__init__()
        self.model = model
        self.half = half

    def forward(self, *bands: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.half:
            score, amap = self.model.score([b.half() for b in bands])
            return score.float(), amap.float()
        return self.model.score(list(bands))


@dataclass(frozen=True)
class Check:
    """An engine against the torch reference on the same bands: max errors per output."""

    batches: tuple[int, ...]  # batch sizes run through the engine
    max_abs: dict[str, float]  # output -> max |engine - torch|
    max_rel: dict[str, float]  # output -> max |engine - torch| / max |torch|
    tolerance: float

    @property
    def ok(self) -> bool:
        return max(self.max_rel.values()) <= self.tolerance

    def summary(self) -> str:
        parts = ", ".join(f"{k} {self.max_rel[k]:.2e} rel ({self.max_abs[k]:.2e} abs)" for k in self.max_rel)
        return f"max error vs torch on batches {'/'.join(map(str, self.batches))}: {parts} (tolerance {self.tolerance:.0e})"


@dataclass(frozen=True)
class ExportReport:
    engine: Path
    sidecar: Path
    seconds: float  # trace + convert + check + verify
    check: Check


def random_bands(preprocess: Preprocess, batch: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Stand-in bands (standard normal) for tracing and checking when no images are given."""
    rng = np.random.default_rng(seed)
    shape = (batch, preprocess.channels, *preprocess.size)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(preprocess.levels)]


def check_bands(bands: Sequence[np.ndarray], preprocess: Preprocess, what: str = "sample bands") -> list[np.ndarray]:
    """`bands` as float32 arrays of the engine's input shape, or a UserError saying what differs."""
    if len(bands) != preprocess.levels:
        raise UserError(f"{what}: {len(bands)} band arrays given, the model takes {preprocess.levels} (FD levels)")
    want = (preprocess.channels, *preprocess.size)
    out = [np.ascontiguousarray(np.asarray(b, dtype=np.float32)) for b in bands]
    for b in out:
        if b.ndim != 4 or b.shape[1:] != want or b.shape[0] != out[0].shape[0] or b.shape[0] < 1:
            raise UserError(f"{what}: bands must all be N x {want[0]} x {want[1]} x {want[2]}, got {[x.shape for x in out]}")
    return out


def torch_reference(model: nn.Module, bands: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """model.score on the CPU in float32: what every engine is checked against."""
    device = next(iter(model.parameters())).device
    with torch.inference_mode():
        score, amap = model.score([torch.from_numpy(b).to(device) for b in bands])
    return score.float().cpu().numpy(), amap.float().cpu().numpy()


def compare(outputs: dict[int, tuple[np.ndarray, np.ndarray]], reference: tuple[np.ndarray, np.ndarray], tolerance: float) -> Check:
    """Errors of engine outputs per batch size {n: (score, amap)} against the reference on the first n."""
    max_abs = dict.fromkeys(OUTPUTS, 0.0)
    max_rel = dict.fromkeys(OUTPUTS, 0.0)
    for n, got in outputs.items():
        for name, value, ref in zip(OUTPUTS, got, reference):
            ref = ref[:n]
            if value.shape != ref.shape:
                raise UserError(f"engine output {name} has shape {value.shape} for batch {n}, torch gives {ref.shape}")
            err = float(np.abs(value.astype(np.float64) - ref).max())
            max_abs[name] = max(max_abs[name], err)
            max_rel[name] = max(max_rel[name], err / max(float(np.abs(ref).max()), 1e-12))
    return Check(tuple(outputs), max_abs, max_rel, tolerance)


def publish_checked(
    out_path: Path, write: Callable[[Path], None], run: Callable[[Path, Sequence[np.ndarray], list[int]], dict],
    model: nn.Module, bands: Sequence[np.ndarray], tolerance: float, what: str,
) -> Check:
    """`write` the engine to a temporary file, check it against torch on `bands` (the whole batch
    and batch 1), and move it to `out_path` only if it agrees; the temporary file never survives
    and an existing `out_path` is untouched on failure. `what` names the engine in errors."""
    tmp = out_path.with_name(f".{out_path.stem}.tmp{out_path.suffix}")
    try:
        write(tmp)
        check = compare(run(tmp, bands, sorted({1, bands[0].shape[0]})), torch_reference(model, bands), tolerance)
        if not check.ok:
            raise UserError(f"{out_path}: the {what} disagrees with torch, not written: {check.summary()}")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return check


def run_onnxruntime(path: str | Path, bands: Sequence[np.ndarray], batches: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """ONNX Runtime (CPU) outputs for the first n items of `bands`, for each n in `batches`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = band_names(len(bands))
    out = {}
    for n in batches:
        score, amap = session.run(list(OUTPUTS), {name: b[:n] for name, b in zip(names, bands)})
        out[n] = (score, amap)
    return out


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision ops, deprecation notes) for one export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def cast_reductions_to_fp32(graph) -> int:  # graph: onnx.GraphProto
    """Run every ReduceMean / ReduceSum of an fp16 graph in float32 (Cast in, Cast back out); one
    whose input the exporter already made float32 (torch upcasts some half sums) is left as it is."""
    from onnx import TensorProto, helper

    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    nodes = []
    count = 0
    for node in graph.node:
        if node.op_type not in _REDUCTIONS or types.get(node.input[0]) == TensorProto.FLOAT:
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        x32, y32 = f"{x}__fp32_{count}", f"{y}__fp32_{count}"
        nodes.append(helper.make_node("Cast", [x], [x32], to=TensorProto.FLOAT, name=f"{node.name}__cast_in"))
        node.input[0], node.output[0] = x32, y32
        nodes.append(node)
        nodes.append(helper.make_node("Cast", [y32], [y], to=TensorProto.FLOAT16, name=f"{node.name}__cast_out"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def trace_onnx(model: nn.Module, example: Sequence[np.ndarray], fp16: bool = False, opset: int = DEFAULT_OPSET):
    """The model as an onnx.ModelProto with a dynamic batch (the example batch must be >= 2)."""
    levels = len(example)
    wrapper = BandsToScore(copy.deepcopy(model).cpu().float().eval(), half=fp16)
    if fp16:
        wrapper.model.half()
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with quiet_export():
        program = torch.onnx.export(
            wrapper,
            tuple(torch.from_numpy(b) for b in example),
            None,
            dynamo=True,
            input_names=list(band_names(levels)),
            output_names=list(OUTPUTS),
            dynamic_shapes=(tuple({0: batch} for _ in range(levels)),),
            opset_version=opset,
            verbose=False,
        )
    proto = program.model_proto
    if fp16:
        cast_reductions_to_fp32(proto.graph)
    return proto


def write_sidecar(
    out_path: Path, *, kind: str, preprocess: Preprocess, calibration: Calibration | None, source_run: str | None, command: str,
    **fields: Any,
) -> Path:
    """The sidecar of a model just exported to `out_path` (.onnx or .pt2), written beside it: the
    model's kind, preprocessing, band inputs and calibration, the file's hash, and the format's
    own `fields` (precision, batch, device, ...)."""
    side = Sidecar(
        format=engine_format(out_path),
        engine=out_path.name,
        sha256="",
        model=kind,
        preprocess=preprocess,
        inputs=band_names(preprocess.levels),
        calibration=calibration,
        source_run=source_run,
        command=command,
        **fields,
    ).with_engine(out_path)
    return side.write(sidecar_path(out_path))


def export_onnx(
    model: nn.Module,
    preprocess: Preprocess,
    calibration: Calibration | None,
    out_path: str | Path,
    *,
    kind: str,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    sample_bands: Sequence[np.ndarray] | None = None,
    source_run: str | None = None,
    command: str = "",
) -> ExportReport:
    """Export `model` (kind `kind`) to `out_path` (.onnx) + its sidecar, checked against torch.

    `sample_bands` (real images' bands, batch >= 2) are what the ONNX Runtime check runs; random
    bands stand in without them. The check runs the whole batch and batch 1 through the same file
    (the batch is dynamic) and must agree with torch to FP32_TOLERANCE (FP16_TOLERANCE for fp16),
    relative to each output's largest magnitude, or nothing is written.
    """
    import onnx

    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise UserError(f"{out_path}: the ONNX export must end in .onnx")
    if not out_path.parent.is_dir():
        raise UserError(f"{out_path.parent}: folder not found; create it or choose another --out")
    bands = check_bands(sample_bands if sample_bands is not None else random_bands(preprocess, 4), preprocess)
    if bands[0].shape[0] < 2:
        raise UserError("sample bands need a batch of at least 2 (the export traces a dynamic batch)")
    precision = "fp16" if fp16 else "fp32"
    model = model.eval()
    start = time.perf_counter()
    with tqdm(total=4, desc=f"export {out_path.name}", unit="step", leave=False) as bar:
        bar.set_postfix_str("trace")
        proto = trace_onnx(model, [b[:2] for b in bands], fp16=fp16, opset=opset)
        bar.update()
        bar.set_postfix_str("onnx.checker")
        onnx.checker.check_model(proto, full_check=True)
        bar.update()
        bar.set_postfix_str("ONNX Runtime vs torch")
        check = publish_checked(
            out_path, lambda tmp: onnx.save(proto, str(tmp)), run_onnxruntime, model, bands, TOLERANCES[precision], "exported graph"
        )
        bar.update()
        bar.set_postfix_str("sidecar")
        side_path = write_sidecar(out_path, kind=kind, preprocess=preprocess, calibration=calibration, source_run=source_run,
                                  command=command, precision=precision, batch=BatchRange(1, 1, None))
        bar.update()
    return ExportReport(out_path, side_path, time.perf_counter() - start, check)
