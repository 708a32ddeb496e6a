"""Backends: one interface, chosen by extension, every engine loaded through its sidecar's checks."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgefreq.calibration import Calibration
from edgefreq.errors import UserError
from edgefreq.export.onnx import export_onnx, random_bands, torch_reference
from edgefreq.export.sidecar import file_sha256
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model
from edgefreq.runtime.backends import Backend, open_backend

SPEC = Preprocess(size=(32, 32), levels=2)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    torch.manual_seed(1)
    model = build_model(ModelConfig(kind="wfdl", wfdl_width=0.125), SPEC.channels, SPEC.levels, SPEC.size).eval()
    calibration = Calibration.from_scores(np.linspace(0.5, 0.7, 30))
    out = tmp_path_factory.mktemp("backends") / "tile.onnx"
    export_onnx(model, SPEC, calibration, out, kind="wfdl", command="edgefreq export runs/tile --out tile.onnx")
    return model, out


def test_onnxruntime_backend(export):
    model, path = export
    with open_backend(path, device="cpu") as backend:
        assert (backend.name, backend.device, backend.max_batch, backend.model) == ("onnxruntime", "cpu", None, "wfdl")
        assert backend.engine_id == f"tile.onnx@{file_sha256(path)[:12]}"
        assert backend.preprocess == SPEC and backend.calibration.threshold == pytest.approx(0.72)
        bands = random_bands(SPEC, 3, seed=5)
        score, amap = backend.infer(bands)
        assert score.shape == (3,) and amap.shape == (3, 32, 32) and score.dtype == np.float32
        ref_score, ref_amap = torch_reference(model, bands)
        np.testing.assert_allclose(score, ref_score, rtol=1e-4)
        score_t, _ = backend.infer([torch.from_numpy(b) for b in bands])  # torch bands work the same
        np.testing.assert_array_equal(score_t, score)


def test_bad_bands_are_one_line_errors(export):
    _, path = export
    backend = open_backend(path, device="cpu")
    with pytest.raises(UserError, match="takes a list of 2 band arrays"):
        backend.infer(random_bands(SPEC, 2)[:1])
    with pytest.raises(UserError, match=r"takes bands of N x 3 x 32 x 32 \(one N\)"):
        backend.infer([np.zeros((2, 3, 32, 32), np.float32), np.zeros((3, 3, 32, 32), np.float32)])
    with pytest.raises(UserError, match="takes bands of N x 3 x 32 x 32"):
        backend.infer([np.zeros((2, 1, 32, 32), np.float32)] * 2)


def test_open_backend_refuses_wrong_paths(export, tmp_path):
    _, path = export
    with pytest.raises(UserError, match="not found"):
        open_backend(tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="not found"):
        open_backend(tmp_path / "missing.engine")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(UserError, match=r"not an engine \(.onnx, .plan, .rtx, .pt2\) or a run folder"):
        open_backend(other)
    copy = tmp_path / "tile.onnx"
    copy.write_bytes(path.read_bytes()[:-1] + b"\0")
    (tmp_path / "tile.yaml").write_text(path.with_suffix(".yaml").read_text())
    with pytest.raises(UserError, match="does not match its sidecar .*re-export with `edgefreq export runs/tile --out tile.onnx`"):
        open_backend(copy)


def edited_copy(path, folder, edit):
    """The engine with a hand-edited sidecar (the hash still matches: it covers the engine only)."""
    import yaml

    folder.mkdir()
    (folder / path.name).write_bytes(path.read_bytes())
    data = yaml.safe_load(path.with_suffix(".yaml").read_text())
    edit(data)
    (folder / path.with_suffix(".yaml").name).write_text(yaml.safe_dump(data))
    return folder / path.name


SIDECAR_EDITS = {
    "size": lambda d: d["preprocess"].update(size=[64, 64]),
    "channels": lambda d: d["preprocess"].update(channels=1, mean=[0.5], std=[0.5]),
    "levels": lambda d: (d["preprocess"].update(levels=3), d.update(inputs=["band0", "band1", "band2"])),
    "input names": lambda d: d.update(inputs=["band1", "band0"]),
    "swapped outputs": lambda d: d.update(outputs=["amap", "score"]),
}


@pytest.mark.parametrize("edit", sorted(SIDECAR_EDITS))
def test_a_sidecar_that_does_not_match_its_engine_is_refused_at_load(export, tmp_path, edit):
    _, path = export
    with pytest.raises(UserError, match="does not match its sidecar: the engine takes band0 Nx3x32x32, band1 Nx3x32x32") as info:
        open_backend(edited_copy(path, tmp_path / "e", SIDECAR_EDITS[edit]), device="cpu")
    assert "\n" not in str(info.value) and "re-export with `edgefreq export runs/tile" in str(info.value)


def test_a_sidecar_without_a_preprocess_block_is_refused(export, tmp_path):
    _, path = export
    with pytest.raises(UserError, match="no preprocess block"):
        open_backend(edited_copy(path, tmp_path / "e", lambda d: d.pop("preprocess")), device="cpu")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has a CUDA provider here")
def test_onnxruntime_cuda_without_the_provider(export):
    with pytest.raises(UserError, match="onnxruntime has no CUDA provider here"):
        open_backend(export[1], device="cuda")


class Doubling(Backend):
    """A backend whose engine doubles band0's mean: to test the shared chunking."""

    name = "test"

    def __init__(self, max_batch: int | None) -> None:
        super().__init__(SPEC, None, "ocrgan", "doubling:0", "cpu", max_batch)
        self.chunks: list[int] = []

    def _infer(self, bands):
        self.chunks.append(len(bands[0]))
        b = np.asarray(bands[0])
        return 2 * b.mean(axis=(1, 2, 3)), b[:, 0]


def test_infer_splits_batches_above_max_batch():
    bands = random_bands(SPEC, 7)
    capped, free = Doubling(3), Doubling(None)
    score, amap = capped.infer(bands)
    assert capped.chunks == [3, 3, 1]
    np.testing.assert_allclose(score, free.infer(bands)[0])
    assert free.chunks == [7] and amap.shape == (7, 32, 32)


def test_openmp_threads_sleep_instead_of_spinning_unless_the_user_says_otherwise():
    """OpenMP's busy-wait made a .pt2 take ~650 ms a frame on a loaded box (reliability.md, item 14);
    the runtime sets OMP_WAIT_POLICY=PASSIVE before torch loads libgomp, keeping a user's own value."""
    import os
    import subprocess
    import sys

    code = "import edgefreq.runtime, os, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, check=True).stdout
    assert out.strip() == "ACTIVE"
