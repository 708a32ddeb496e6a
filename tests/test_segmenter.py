"""The segmentation head (model.segment): its forgeries, its place in the score, its training stage."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import edgefreq.train as train_mod
from conftest import export_tiny, train_interrupted_then_resumed
from edgefreq.calibrate import calibrate
from edgefreq.calibration import ThresholdPolicy
from edgefreq.data import ForgeConfig, forge_mixed
from edgefreq.errors import UserError
from edgefreq.models import ModelConfig, build_model
from edgefreq.rundir import load_config, load_run, training_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEG = ["model.segment=4", "train.segment_epochs=3", "preprocess.size=[32, 32]", "train.batch_size=8", "train.device=cpu"]


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> Path:
    """A fixtured part (a gray plate with two holes) in 24 good images with sensor noise, and test
    images with a dark scratch: the template model sees the scratch, the head must learn to."""
    root = tmp_path_factory.mktemp("plates")
    rng = np.random.default_rng(0)

    def draw(scratch: bool) -> np.ndarray:
        img = np.full((32, 32), 150, np.uint8)
        cv2.circle(img, (10, 16), 4, 60, -1)
        cv2.circle(img, (22, 16), 4, 60, -1)
        if scratch:
            x = int(rng.integers(4, 20))
            cv2.line(img, (x, 4), (x + 8, 28), 20, 1)
        noise = rng.normal(0, 4, img.shape)
        return np.clip(img + noise, 0, 255).astype(np.uint8)

    for folder, n, scratch in (("train/good", 24, False), ("test/good", 6, False), ("test/scratch", 6, True)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), draw(scratch))
    return root


def test_forge_mixed_changes_only_the_masked_pixels_and_uses_every_family() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(60, 1, 32, 32) * 2 - 1
    forged, mask = forge_mixed(images, ForgeConfig(), g)
    assert mask.shape == (60, 1, 32, 32) and mask.dtype == torch.bool
    assert torch.equal(forged[~mask.expand_as(forged)], images[~mask.expand_as(images)])
    area = mask.float().mean(dim=(1, 2, 3))
    assert (area > 0).float().mean() > 0.8  # nearly every image got a forgery
    # the families differ in shape: thin scratches (<= 2 px wide), rectangles, blobs; all appear
    boxes = [m[0].nonzero() for m in mask]
    filled = [len(b) / ((b[:, 0].max() - b[:, 0].min() + 1) * (b[:, 1].max() - b[:, 1].min() + 1)).item() for b in boxes if len(b)]
    assert min(filled) < 0.3 and max(filled) > 0.9  # a sparse line and a (nearly) full rectangle at least
    again, mask_again = forge_mixed(images, ForgeConfig(), torch.Generator().manual_seed(0))
    assert torch.equal(again, forged) and torch.equal(mask_again, mask)


def test_forge_mixed_leaves_out_cutpaste_when_it_is_switched_off(monkeypatch) -> None:
    import edgefreq.data.forge as forge

    called = []
    real = forge.forge_with_mask
    monkeypatch.setattr(forge, "forge_with_mask", lambda *a: called.append(1) or real(*a))
    images = torch.rand(30, 1, 32, 32) * 2 - 1
    forge.forge_mixed(images, ForgeConfig(), torch.Generator().manual_seed(0))
    assert called
    called.clear()
    forged, mask = forge.forge_mixed(images, ForgeConfig(cutpaste=False, cutout=False), torch.Generator().manual_seed(0))
    assert not called and (mask.float().mean(dim=(1, 2, 3)) > 0).float().mean() > 0.8  # blobs and scratches only


def test_the_segmenter_replaces_the_error_map_and_is_not_a_generator_parameter() -> None:
    for kind, levels in (("wfdl", 1), ("ocrgan", 2), ("variation", 1)):
        cfg = ModelConfig(kind=kind, ngf=4, ndf=4, wfdl_width=0.25, segment=4)
        model = build_model(cfg, 1, levels, (32, 32)).eval()
        seg = {id(p) for p in model.segmenter.parameters()}
        assert seg and not seg & {id(p) for p in model.generator_parameters()}
        assert {id(p) for p in model.segmenter_parameters()} == seg
        bands = [torch.randn(2, 1, 32, 32) for _ in range(levels)]
        with torch.no_grad():
            raw, _ = model.raw_parts(bands)
            x = model.target(bands)
            err = model.error(x, model.reconstruct(bands))
        assert raw.shape == (2, 32, 32) and 0 <= float(raw.min()) and float(raw.max()) <= 1  # a probability map
        assert not torch.allclose(raw, err)
    with pytest.raises(UserError, match="divisible by 8"):
        build_model(ModelConfig(kind="variation", segment=4), 1, 1, (36, 32))
    with pytest.raises(UserError, match="model.segment"):
        ModelConfig(segment=-1)


def test_the_segmenter_input_statistics_floor_flat_pixels_as_the_score_head_does() -> None:
    from edgefreq.models.segmenter import Segmenter

    seg = Segmenter(1, 4, (8, 8))
    maps = torch.rand(20, 8, 8) + 1.0
    maps[:, :2] = 1.0  # flat pixels: their std is 0
    seg.fit_map_stats(maps)
    std = maps.double().std(0)
    assert torch.allclose(seg.map_mean, maps.mean(0)) and float(seg.map_std[:2].min()) > 0
    assert torch.allclose(seg.map_std, torch.maximum(std, 0.1 * std.median()).float())
    level = maps.clone()
    level[:] = 1000.0 + 1e-4 * torch.rand(20, 8, 8)  # spread at float32 noise: the numeric floor binds
    seg.fit_map_stats(level)
    assert float(seg.map_std.min()) >= 1e-3 * 1000.0 * 0.999


def test_a_segmenter_trains_after_the_model_and_detects_what_the_template_sees(plates: Path, tmp_path: Path) -> None:
    cfg = load_config("variation", [*SEG, "preprocess.channels=1", "preprocess.mean=[0.5]", "preprocess.std=[0.5]", "train.segment_epochs=15"])
    run = tmp_path / "run"
    train_mod.train(cfg, plates, run)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 17)) and all(r.get("stage") == "segment" for r in log[1:])
    assert log[-1]["focal"] < log[1]["focal"]
    model, _ = load_run(run, stats=False)
    assert float(model.segmenter.map_std.min()) > 0 and float(model.segmenter.map_mean.abs().sum()) > 0  # fitted, saved
    calibrate(run, ThresholdPolicy())
    model, cfg = load_run(run)
    from edgefreq.scoring import score_paths

    good = sorted((plates / "test/good").glob("*.png"))
    bad = sorted((plates / "test/scratch").glob("*.png"))
    scores, maps, _ = score_paths(model, cfg.preprocess, good + bad)
    assert scores[len(good):].min() > scores[: len(good)].max()  # every scratch above every good plate
    with pytest.raises(UserError, match=r"--set model.map: training reads this key.*changes only model.normalize"):
        calibrate(run, ThresholdPolicy(), overrides=["model.map=msgms"])  # its head was trained on the sq map
    export_tiny(run, tmp_path / "seg.onnx")  # the head is in the graph, checked against torch on export
    assert (tmp_path / "seg.onnx").stat().st_size > sum(p.numel() for p in model.segmenter.parameters()) * 4


def test_the_segmentation_stage_resumes_exactly(plates: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = load_config("cpu-budget", [*SEG, "model.kind=wfdl", "preprocess.levels=1", "model.wfdl_width=0.25", "train.epochs=2", "train.ema=0.5"])
    straight = tmp_path / "straight"
    train_mod.train(cfg, plates, straight)
    final = load_file(str(straight / "model.safetensors"))
    ema = load_file(str(straight / "checkpoint" / "ema.safetensors"))
    generator = [k for k in final if k.startswith(("encoder.", "decoder.")) and final[k].is_floating_point()]
    assert generator and all(torch.equal(final[k], ema[f"module.{k}"]) for k in generator)  # the EMA is what it segments
    for after in (1, 3):  # interrupted in the reconstruction stage, then in the segmentation stage
        broken = tmp_path / f"broken{after}"
        train_interrupted_then_resumed(monkeypatch, cfg, plates, broken, after_epoch=after)
        again = load_file(str(broken / "model.safetensors"))
        assert all(torch.allclose(final[k], again[k], atol=1e-6) for k in final), after


def test_a_segmenter_makes_its_map_a_training_key() -> None:
    plain = load_config("variation")
    seg = load_config("variation", ["model.segment=4"])
    assert "map" not in training_key(plain)["model"]
    assert training_key(seg)["model"]["map"] == "sq"
    assert training_key(load_config("variation", ["model.segment=4", "model.map=msgms"])) != training_key(seg)
    assert training_key(load_config("variation", ["model.segment=4", "model.normalize=none"])) == training_key(seg)


def test_the_stage_feeds_the_head_what_inference_feeds_it(plates: Path, tmp_path: Path, monkeypatch) -> None:
    """With FD bands whose sum is not the image (clip_high), training must give the head the
    model's target (the sum of the bands), as raw_map does, not the forged image itself."""
    from edgefreq.kernels import decouple
    from edgefreq.models.segmenter import Segmenter

    cfg = load_config("cpu-budget", [*SEG, "model.kind=wfdl", "preprocess.levels=2", "preprocess.clip_high=true", "model.wfdl_width=0.25",
                                      "train.epochs=1", "train.segment_epochs=1", "preprocess.channels=1", "preprocess.mean=[0.5]", "preprocess.std=[0.5]"])
    seen = []
    real_decouple, real_forward = train_mod.decouple, Segmenter.forward
    monkeypatch.setattr(train_mod, "decouple", lambda images, *a: seen.append(("images", images)) or real_decouple(images, *a))
    monkeypatch.setattr(Segmenter, "forward", lambda self, x, x_hat, err: seen.append(("x", x)) or real_forward(self, x, x_hat, err))
    train_mod.train(cfg, plates, tmp_path / "run")
    fed = [(seen[i - 1][1], x) for i, (what, x) in enumerate(seen) if what == "x" and seen[i - 1][0] == "images"]
    assert fed
    for images, x in fed:
        target = sum(decouple(images, 2, "torch", True))
        assert torch.allclose(x, target) and not torch.allclose(x, images)
