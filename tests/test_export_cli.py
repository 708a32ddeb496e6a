"""`edgefreq export` / `edgefreq build --format pt2` end to end on a run folder of real images.

The run folder is made by hand (config, weights of a tiny seeded model, the split, a
calibration), exactly as `edgefreq train` + `edgefreq calibrate` lay it out, so no training runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgefreq.calibration import Calibration
from edgefreq.export.calibration_images import calibration_batches
from edgefreq.export.int8 import score_batches, shifted
from edgefreq.cli import main
from edgefreq.config import to_dict
from edgefreq.export.sidecar import Sidecar
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model
from edgefreq.config import write_yaml
from edgefreq.rundir import RunConfig
from edgefreq.runtime.backends import open_backend

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOTTLE = DATA / "mvtec_bottle"
SPEC = Preprocess(size=(32, 32), levels=2)

pytestmark = pytest.mark.skipif(not BOTTLE.is_dir(), reason=f"{BOTTLE} not found (shared data set absent)")


def make_run(run: Path) -> Path:
    """RUN/config.yaml, model.safetensors, split.yaml (bottle images), calibration.yaml."""
    cfg = RunConfig(model=ModelConfig(kind="ocrgan", ngf=4, ndf=4), preprocess=SPEC)
    torch.manual_seed(0)
    model = build_model(cfg.model, SPEC.channels, SPEC.levels, SPEC.size).eval()
    run.mkdir()
    write_yaml(run / "config.yaml", to_dict(cfg))
    save_file(model.state_dict(), str(run / "model.safetensors"))
    good = sorted((BOTTLE / "train" / "good").glob("*.png"))
    write_yaml(run / "split.yaml", {
        "root": str(BOTTLE),
        "train": [str(p.relative_to(BOTTLE)) for p in good[12:20]],
        "calibration": [str(p.relative_to(BOTTLE)) for p in good[:12]],
    })
    Calibration.from_scores(np.linspace(0.2, 0.4, 12)).save(run / "calibration.yaml")
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    run = make_run(root / "bottle-run")
    code = main(["export", str(run), "--out", str(root / "bottle.onnx"), "--int8"])
    assert code == 0
    return run, root


def test_export_writes_fp32_and_int8_with_sidecars(exported, capsys):
    run, root = exported
    fp32, int8 = Sidecar.load(root / "bottle.onnx"), Sidecar.load(root / "bottle.int8.onnx")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert fp32.source_run == str(run.resolve()) == int8.source_run
    assert fp32.command == f"edgefreq export {run} --out {root / 'bottle.onnx'}"
    assert int8.command.endswith("--int8 --int8-method minmax")
    assert fp32.calibration == Calibration.load(run / "calibration.yaml")
    # the INT8 model gets the fp32 calibration shifted by its median drift on the run's calibration images
    paths = sorted((BOTTLE / "train" / "good").glob("*.png"))[:12]
    drift = score_batches(root / "bottle.int8.onnx", calibration_batches(paths, SPEC, 5)) - score_batches(
        root / "bottle.onnx", calibration_batches(paths, SPEC, 5))
    assert int8.calibration == shifted(fp32.calibration, float(np.median(drift)))


def test_torch_reference_and_engines_agree(exported):
    run, root = exported
    paths = sorted((BOTTLE / "test" / "broken_small").glob("*.png"))[:4]
    bands = next(calibration_batches(paths, SPEC, 4))
    with open_backend(run, device="cpu") as reference, open_backend(root / "bottle.onnx") as onnx:
        assert reference.name == "torch" and reference.engine_id.startswith("bottle-run@")
        assert reference.calibration == onnx.calibration
        ref_score, ref_map = reference.infer(bands)
        score, amap = onnx.infer(bands)
    np.testing.assert_allclose(score, ref_score, rtol=1e-4)
    np.testing.assert_allclose(amap, ref_map, rtol=1e-4, atol=1e-4 * np.abs(ref_map).max())
    with open_backend(root / "bottle.int8.onnx") as int8:
        score8, _ = int8.infer(bands)
    assert np.abs(score8 - ref_score).max() / np.abs(ref_score).max() < 0.05


def test_export_refusals(exported, tmp_path, capsys):
    run, _ = exported
    assert main(["export", str(run), "--out", str(tmp_path / "bottle.plan")]) == 2
    assert "--out must be a .onnx file" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "no-run"), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and err.count("\n") == 1


def test_build_refusals(exported, tmp_path, capsys):
    _, root = exported
    assert main(["build", str(root / "bottle.onnx"), "--format", "pt2", "--precision", "fp16"]) == 2
    assert "pt2 packages are fp32" in capsys.readouterr().err
    assert main(["build", str(root / "bottle.onnx"), "--format", "pt2", "--batches", "1,x"]) == 2
    assert "--batches must be" in capsys.readouterr().err
    assert main(["build", str(root / "bottle.onnx"), "--format", "plan", "--device", "cpu"]) == 2
    assert "--device is for --format pt2" in capsys.readouterr().err
    moved = tmp_path / "moved.onnx"
    moved.write_bytes((root / "bottle.onnx").read_bytes())
    side = Sidecar.load(root / "bottle.onnx")
    replace(side, engine="moved.onnx", source_run=str(tmp_path / "gone")).write(tmp_path / "moved.yaml")
    assert main(["build", str(moved), "--format", "pt2"]) == 2
    assert "which is not here: pass the run folder instead" in capsys.readouterr().err


@pytest.mark.slow
def test_build_pt2_from_the_export_runs_on_cpu(exported, capsys):
    run, root = exported
    assert main(["build", str(root / "bottle.onnx"), "--format", "pt2", "--batches", "1,4,8"]) == 0
    out = capsys.readouterr().out
    pt2 = root / "bottle.cpu.pt2"
    side = Sidecar.load(pt2)
    assert (side.format, side.device, side.batch.max, side.source_run) == ("pt2", "cpu", 8, str(run.resolve()))
    assert side.calibration == Sidecar.load(root / "bottle.onnx").calibration
    bands = next(calibration_batches(sorted((BOTTLE / "test" / "contamination").glob("*.png"))[:10], SPEC, 10))
    with open_backend(pt2) as compiled, open_backend(root / "bottle.onnx") as onnx:
        assert (compiled.name, compiled.max_batch) == ("inductor", 8)
        score, amap = compiled.infer(bands)  # 10 > max batch 8: two chunks
        ref_score, ref_map = onnx.infer(bands)
    np.testing.assert_allclose(score, ref_score, rtol=1e-4)
    np.testing.assert_allclose(amap, ref_map, rtol=1e-4, atol=1e-4 * np.abs(ref_map).max())
    print(out)


def test_export_warns_on_a_generator_that_did_not_learn(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run")
    write_yaml(run / "train_summary.yaml", {"beats_mean_image": False, "line": "the generator did NOT beat the mean training image: ..."})
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "warning: the generator did NOT beat the mean training image" in capsys.readouterr().out
