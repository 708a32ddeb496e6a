"""An export's files by precision: NAME.onnx (fp32), NAME.fp16.onnx, NAME.int8.onnx, side by side.

`edgefreq export --fp16 / --int8` writes the variants next to NAME.onnx; `edgefreq build
--precision` picks the one it compiles from; a pt2 package is compiled from the run an export
came from (its sidecar's source_run).
"""

from __future__ import annotations

from pathlib import Path

from edgefreq.calibration import Calibration
from edgefreq.errors import UserError
from edgefreq.rundir import read_calibration

from .sidecar import Sidecar

TAGS = ("fp16", "int8")


def variant_path(out: Path, tag: str) -> Path:
    """bottle.onnx -> bottle.fp16.onnx / bottle.int8.onnx."""
    return out.with_name(f"{out.stem}.{tag}.onnx")


def base_path(onnx: Path) -> Path:
    """bottle.fp16.onnx -> bottle (the export's name without precision tag and extension)."""
    stem = onnx.stem
    for tag in TAGS:
        if stem.endswith(f".{tag}"):
            stem = stem[: -len(tag) - 1]
    return onnx.with_name(stem)


def onnx_for(onnx: Path, precision: str | None) -> Path:
    """The ONNX export of `precision` next to `onnx` (the given file when it already is)."""
    if precision is None or Sidecar.read(onnx).precision == precision:
        return onnx
    base = base_path(onnx)
    variant = base.with_name(base.name + ("" if precision == "fp32" else f".{precision}") + ".onnx")
    if not variant.exists():
        flag = "" if precision == "fp32" else f" --{precision}"
        raise UserError(f"no {precision} export {variant.name} next to {onnx.name}: run `edgefreq export RUN --out {base}.onnx{flag}` first")
    return variant


def source_run(source: Path) -> tuple[Path, Calibration | None, Path]:
    """(run folder, its calibration, the name stem of what is built) for a run folder or an exported .onnx."""
    if source.is_dir():
        return source, read_calibration(source), source
    if source.suffix == ".onnx":
        side = Sidecar.load(source)
        if side.source_run is None or not Path(side.source_run).is_dir():
            raise UserError(f"{source} was exported from the run {side.source_run}, which is not here: pass the run folder instead")
        return Path(side.source_run), side.calibration, base_path(source)
    raise UserError(f"{source}: pass an exported .onnx or a run folder")
