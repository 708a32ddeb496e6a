"""RIAD-style inpainting (model.inpaint): the cell masks, the pasted reconstruction, its training input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import edgefreq.train as train_mod
from conftest import export_tiny
from edgefreq.errors import UserError
from edgefreq.models import ModelConfig, build_model
from edgefreq.models.inpaint import CELLS, PARTS, erase_cells, inference_masks
from edgefreq.rundir import load_config, load_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["model.kind=wfdl", "model.inpaint=true", "model.wfdl_width=0.25", "preprocess.levels=1", "preprocess.size=[24, 40]",
        "preprocess.channels=1", "preprocess.mean=[0.5]", "preprocess.std=[0.5]", "train.batch_size=4", "train.epochs=1", "train.device=cpu"]


def test_each_scale_splits_every_pixel_into_exactly_one_set_even_off_the_grid() -> None:
    masks = inference_masks((20, 28))  # 20 and 28 are not multiples of 8 or 16: the last cells are cut
    assert masks.shape == (len(CELLS), PARTS, 20, 28)
    assert torch.equal(masks.sum(1), torch.ones(len(CELLS), 20, 28))
    for s, cell in enumerate(CELLS):  # whole cells: constant on every cell
        grid = masks[s, :, ::cell, ::cell].repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :20, :28]
        assert torch.equal(grid, masks[s])
    assert all(0.2 < float(masks[s, p].mean()) < 0.45 for s in (0, 1) for p in range(PARTS))  # a third each (enough cells)
    assert torch.equal(masks, inference_masks((20, 28)))  # fixed: the model is deterministic


def test_the_score_sees_each_pixel_only_from_the_pass_that_erased_it() -> None:
    model = build_model(ModelConfig(kind="wfdl", wfdl_width=0.25, inpaint=True), 1, 1, (24, 40)).eval()
    x = torch.randn(3, 1, 24, 40)
    passes = []
    # a "generator" that returns its input plus 1: what it pastes back is an erased pixel's 0 + 1
    model.reconstruct = lambda bands: passes.append(bands[0].shape[0]) or bands[0] + 1
    assert torch.equal(model.restore([x]), torch.ones_like(x))  # no pixel of x reaches its own reconstruction
    assert passes == [len(CELLS) * PARTS * 3]  # one batch of every scale x set x image
    plain = build_model(ModelConfig(kind="wfdl", wfdl_width=0.25), 1, 1, (24, 40)).eval()
    plain.reconstruct = lambda bands: bands[0] + 1
    assert torch.equal(plain.restore([x]), x + 1)


def test_erase_cells_erases_a_third_in_whole_cells_differently_per_image() -> None:
    images = torch.rand(16, 1, 64, 64) + 0.5  # never 0 before erasing
    gen = torch.Generator().manual_seed(3)
    out = erase_cells(images, gen)
    erased = out == 0
    assert torch.equal(out[~erased], images[~erased])
    assert 0.2 < float(erased.float().mean()) < 0.45
    assert len({tuple(e.flatten().tolist()) for e in erased}) == 16
    assert torch.equal(out, erase_cells(images, torch.Generator().manual_seed(3)))


def test_inpainting_trains_on_erased_copies_and_exports(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for folder, n in (("train/good", 12), ("test/good", 2), ("test/dent", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            img = np.clip(rng.normal(128, 20, (24, 40)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), img)
    from edgefreq.models.wfdl import WFDL

    seen = []
    real = WFDL.losses_g
    monkeypatch.setattr(WFDL, "losses_g", lambda self, bands, clean=None: seen.append((bands[0], clean)) or real(self, bands, clean))
    run = tmp_path / "run"
    train_mod.train(load_config("wfdl-cpu-budget", TINY), root, run)
    assert seen and all(clean is not None and 0.2 < float((inp == 0).float().mean()) < 0.45 and bool((clean != 0).all()) for inp, clean in seen)
    export_tiny(run, tmp_path / "riad.onnx")  # 12 passes in the graph, checked against torch on export
    model, _ = load_run(run, stats=False)
    assert model.inpaint_masks.shape[:2] == (len(CELLS), PARTS) and "inpaint_masks" not in model.state_dict()


def test_an_inpainting_model_exports_in_fp16(tmp_path: Path) -> None:
    from edgefreq.export.onnx import export_onnx, random_bands

    cfg = load_config("wfdl-cpu-budget", TINY)
    spec = cfg.preprocess
    model = build_model(cfg.model, spec.channels, spec.levels, spec.size).eval()
    onnx = export_onnx(model, spec, None, tmp_path / "riad.fp16.onnx", kind="wfdl", fp16=True, sample_bands=random_bands(spec, 2)).engine
    assert onnx.exists()  # typed, checked and compared with torch (its traced sum over the sets is float32 already: the fp16 reduction cast must leave it)


def test_inpaint_refuses_what_has_nothing_to_inpaint() -> None:
    with pytest.raises(UserError, match="nothing to inpaint"):
        load_config("variation", ["model.inpaint=true"])
    with pytest.raises(UserError, match="choose one"):
        load_config("wfdl-cpu-budget", ["model.inpaint=true", "model.denoise=true"])
