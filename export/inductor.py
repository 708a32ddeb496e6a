"""AOTInductor packages (.pt2): the model compiled ahead of time for the CPU or a CUDA GPU.

    report = build_pt2(model, preprocess, calibration, "bottle.cpu.pt2", kind="ocrgan", device="cpu")

A .pt2 is compiled from the torch model (torch.export -> torch._inductor.aoti_compile_and_package),
not from the ONNX: Inductor compiles an exported torch program, and there is no ONNX -> torch
path. So `edgefreq build bottle.onnx --format pt2` builds from the run that bottle.onnx was
exported from (its sidecar records `source_run`), and `edgefreq build RUN --format pt2` builds
from a run folder directly. The batch is dynamic (torch.export.Dim) within the sidecar's range;
the package is loaded with torch._inductor.aoti_load_package, which runs the compiled code
without recompiling. A package is tied to its torch version and, on CUDA, to the GPU model it
was compiled for: the sidecar records both and the loader refuses a mismatch. FP32 only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgefreq.calibration import Calibration
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess

from .onnx import FP32_TOLERANCE, BandsToScore, Check, check_bands, publish_checked, quiet_export, random_bands, write_sidecar
from .sidecar import BatchRange, Machine

DEFAULT_BATCH = BatchRange(1, 8, 32)
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Pt2Report:
    engine: Path
    sidecar: Path
    seconds: float  # export + compile
    check: Check


def default_pt2_path(base: str | Path, device: str, machine: Machine) -> Path:
    """bottle -> bottle.cpu.pt2 or bottle.sm87.pt2 (a CUDA package is only good for one GPU model)."""
    base = Path(base)
    tag = "cpu" if device == "cpu" else "sm" + (machine.compute_capability or "0.0").replace(".", "")
    return base.with_name(f"{base.name}.{tag}.pt2")


def run_pt2(path: str | Path, bands: Sequence[np.ndarray], batches: Sequence[int], device: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Outputs of a .pt2 package for the first n items of `bands`, for each n in `batches`."""
    runner = torch._inductor.aoti_load_package(str(path))
    out = {}
    with torch.inference_mode():
        for n in batches:
            score, amap = runner(*(torch.from_numpy(b[:n]).to(device) for b in bands))
            out[n] = (score.cpu().numpy(), amap.cpu().numpy())
    return out


def build_pt2(
    model: nn.Module,
    preprocess: Preprocess,
    calibration: Calibration | None,
    out_path: str | Path,
    *,
    kind: str,
    device: str = "cpu",
    batch: BatchRange = DEFAULT_BATCH,
    sample_bands: Sequence[np.ndarray] | None = None,
    source_run: str | None = None,
    command: str = "",
    machine: Machine | None = None,
) -> Pt2Report:
    """Compile `model` into an AOTInductor package at `out_path` (.pt2) + its sidecar, checked against torch."""
    out_path = Path(out_path)
    if out_path.suffix != ".pt2":
        raise UserError(f"{out_path}: an AOTInductor package must end in .pt2")
    if not out_path.parent.is_dir():
        raise UserError(f"{out_path.parent}: folder not found; create it or choose another --out")
    if device not in DEVICES:
        raise UserError(f"pt2 device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("a CUDA .pt2 is compiled on the GPU that runs it, and this machine has no CUDA GPU: build with --device cpu or on the target")
    if batch.max is None or batch.max < 2:
        raise UserError("a .pt2 package needs a maximum batch size of at least 2 (--batches MIN,OPT,MAX)")
    machine = Machine.probe() if machine is None else machine
    bands = check_bands(sample_bands if sample_bands is not None else random_bands(preprocess, 4), preprocess)
    if bands[0].shape[0] < 2 or bands[0].shape[0] > batch.max:
        raise UserError(f"sample bands need a batch between 2 and the maximum batch {batch.max}")
    start = time.perf_counter()
    wrapper = BandsToScore(copy.deepcopy(model).float().to(device).eval())
    dim = torch.export.Dim("batch", min=batch.min, max=batch.max)
    example = tuple(torch.from_numpy(b[:2]).to(device) for b in bands)
    with tqdm(total=3, desc=f"pt2 {out_path.name}", unit="step", leave=False) as bar:
        bar.set_postfix_str("torch.export")
        with quiet_export(), torch.inference_mode():
            program = torch.export.export(wrapper, example, dynamic_shapes=(tuple({0: dim} for _ in bands),))
        bar.update()
        bar.set_postfix_str(f"AOTInductor compile ({device}) + check vs torch")

        def compile_to(path: Path) -> None:
            with quiet_export():
                torch._inductor.aoti_compile_and_package(program, package_path=str(path))

        check = publish_checked(
            out_path, compile_to, lambda path, b, batches: run_pt2(path, b, batches, device), wrapper.model, bands, FP32_TOLERANCE, "compiled package",
        )
        bar.update(2)
    cuda = device == "cuda"
    side_path = write_sidecar(
        out_path, kind=kind, preprocess=preprocess, calibration=calibration, source_run=source_run, command=command,
        batch=batch, device=device, gpu=machine.gpu if cuda else None, compute_capability=machine.compute_capability if cuda else None,
        torch_version=str(torch.__version__),
    )
    return Pt2Report(out_path, side_path, time.perf_counter() - start, check)
