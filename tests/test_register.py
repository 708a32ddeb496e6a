"""Registration (preprocess.register: rigid, kernels.register): a known pose is recovered, and a line
of turned parts is inspected in the reference pose, from train to the runtime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgefreq.calibrate import calibrate
from edgefreq.calibration import ThresholdPolicy
from edgefreq.data import load_image
from edgefreq.errors import UserError
from edgefreq.evaluate import evaluate
from edgefreq.kernels import Preprocess, frame_to_bands, preprocess_frame, registered
from edgefreq.kernels import register as register_pose
from edgefreq.rundir import load_config, read_config, training_key
from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.frame import Frame
from edgefreq.runtime.inspector import Inspector
from edgefreq.train import train


def part(size: int = 200) -> np.ndarray:
    """A gray part with no symmetry: an off-centre bar, a dot and a brightness ramp."""
    img = np.full((size, size), 40, np.uint8)
    cv2.rectangle(img, (50, 60), (150, 85), 200, -1)
    cv2.circle(img, (70, 140), 18, 255, -1)
    cv2.line(img, (120, 110), (160, 160), 120, 6)
    return cv2.GaussianBlur(img, (5, 5), 1.5)


def moved(img: np.ndarray, angle: float, dx: float, dy: float, fill: int = 40) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


@pytest.mark.parametrize("angle, dx, dy", [(0, 0, 0), (37, 8, -5), (143, -10, 6), (250, 4, 9), (318, -7, -8)])
def test_estimated_pose_undoes_the_motion(angle, dx, dy):
    img = part()
    reference = register_pose.to_gray_small(img)
    turned = moved(img, angle, dx, dy)
    pose = register_pose.estimate_pose(register_pose.to_gray_small(turned), reference)
    assert abs((pose[0] + angle + 180.0) % 360.0 - 180.0) <= 1.5, pose  # the rotation undone
    back = cv2.warpAffine(turned, register_pose.pose_matrix(turned.shape, pose), turned.shape[::-1],
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=40)
    inner = (slice(30, -30), slice(30, -30))
    residual = np.abs(back.astype(float) - img.astype(float))[inner].mean()
    before = np.abs(turned.astype(float) - img.astype(float))[inner].mean()
    assert residual < 3.0 and (angle == 0 and dx == 0 or residual < before / 4), (residual, before)


def camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The part as a camera sees it: with sensor noise (sigma 2 grey levels)."""
    return np.clip(img + rng.normal(0.0, 2.0, img.shape), 0, 255).astype(np.uint8)


def turned_set(root: Path, rng: np.random.Generator, good: int = 16, defects: int = 6) -> None:
    """An MVTec-layout set of one part lying at any angle, shifted a little; defects: a dark hole
    at a fixed place on the part (so its mask turns with it)."""
    def write(path: Path, img: np.ndarray, noisy: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), camera(img, rng) if noisy else img)

    def pose() -> tuple[float, float, float]:
        return rng.uniform(0, 360), *rng.uniform(-6, 6, 2)

    img = part(96)
    for k in range(good):
        write(root / "train" / "good" / f"{k:03d}.png", moved(img, *pose()))
    for k in range(4):
        write(root / "test" / "good" / f"{k:03d}.png", moved(img, *pose()))
    hole = img.copy()
    cv2.circle(hole, (60, 25), 5, 0, -1)
    mask = np.zeros_like(img)
    cv2.circle(mask, (60, 25), 5, 255, -1)
    for k in range(defects):
        angle, dx, dy = pose()
        write(root / "test" / "hole" / f"{k:03d}.png", moved(hole, angle, dx, dy))
        write(root / "ground_truth" / "hole" / f"{k:03d}_mask.png", moved(mask, angle, dx, dy, fill=0), noisy=False)


def variation_run(data: Path, out: Path, register: str, evaluated: bool = True) -> dict | None:
    cfg = load_config("variation", ["preprocess.size=[64, 64]", "preprocess.channels=1", "preprocess.mean=[0.5]",
                                    "preprocess.std=[0.5]", f"preprocess.register={register}", "data.calibration_fraction=0.25"])
    train(cfg, data, out)
    calibrate(out, ThresholdPolicy(), device="cpu")
    return evaluate(out, data, out / "eval", device="cpu") if evaluated else None


def test_eval_estimates_each_test_images_pose_once(tmp_path, monkeypatch):
    """The pose that registered a test image also moves its mask: eval does not estimate it twice."""
    data = tmp_path / "data"
    turned_set(data, np.random.default_rng(1), good=12, defects=3)
    variation_run(data, tmp_path / "rigid", "rigid", evaluated=False)
    calls = []
    estimate = register_pose.estimate_pose
    monkeypatch.setattr(register_pose, "estimate_pose", lambda *a: calls.append(1) or estimate(*a))
    report = evaluate(tmp_path / "rigid", data, tmp_path / "rigid" / "eval", device="cpu")
    assert len(calls) == 4 + 3 and report["pixel_auroc"] > 0.95, (len(calls), report["pixel_auroc"])


def test_a_turned_part_is_inspected_in_the_reference_pose(tmp_path):
    data = tmp_path / "data"
    turned_set(data, np.random.default_rng(0))
    plain = variation_run(data, tmp_path / "plain", "none")
    rigid = variation_run(data, tmp_path / "rigid", "rigid")
    spec = read_config(tmp_path / "rigid").preprocess
    assert spec.register == "rigid" and register_pose.decode_reference(spec.reference).shape == (128, 128)
    assert rigid["image_auroc"] == 1.0 and rigid["escape_rate"] == 0.0, rigid["image_auroc"]
    assert rigid["pixel_auroc"] > 0.95 > plain["pixel_auroc"]  # the masks moved with their images
    # the engine's preprocessing registers too: the same part at two angles scores alike on the line
    with open_backend(tmp_path / "rigid", device="cpu") as backend:
        inspector = Inspector(backend)
        img = part(96)
        rng = np.random.default_rng(5)  # angles off the multiples of 90: resampled like every training image
        frames = [Frame(k, 0.0, camera(moved(img, angle, 3, -2), rng), "test") for k, angle in enumerate((20, 140, 275))]
        decisions = [i.decision for i in inspector.inspect(frames, 0)]
    assert all(d.verdict == "OK" for d in decisions), [d.score for d in decisions]


def test_the_reference_is_fitted_on_the_training_split_and_a_rerun_resumes(tmp_path, monkeypatch):
    data = tmp_path / "data"
    turned_set(data, np.random.default_rng(1), good=8, defects=1)
    cfg = load_config("variation", ["preprocess.size=[64, 64]", "preprocess.register=rigid", "data.calibration_fraction=0.5"])
    train(cfg, data, tmp_path / "run")
    first = read_config(tmp_path / "run").preprocess.reference
    split = yaml.safe_load((tmp_path / "run" / "split.yaml").read_text())
    assert first == register_pose.encode_reference(register_pose.fit_reference(load_image(data / p) for p in split["train"]))
    import edgefreq.train as train_module

    def no_refit(images):
        raise AssertionError("a resumed run takes its own reference pose, it does not fit one again")

    monkeypatch.setattr(train_module, "fit_reference", no_refit)
    train(cfg, data, tmp_path / "run")  # the same command again resumes: same reference, no refusal
    assert read_config(tmp_path / "run").preprocess.reference == first
    # the reference is fitted, not read: the plain config is the same training (a scoring twin finds it)
    assert training_key(cfg) == training_key(read_config(tmp_path / "run"))
    with pytest.raises(UserError, match="scoring setting that needs no training"):
        train(load_config("variation", ["preprocess.size=[64, 64]", "preprocess.register=rigid", "data.calibration_fraction=0.5",
                                        "model.map=msgms"]), data, tmp_path / "run")


def test_every_fd_path_registers_once():
    img = part(96)
    reference = register_pose.encode_reference(register_pose.to_gray_small(img))
    spec = Preprocess(size=(64, 64), channels=1, mean=(0.5,), std=(0.5,), levels=1, register="rigid", reference=reference)
    frame = moved(img, 130, 4, -3)
    plain = replace(spec, register="none", reference=None)
    expected = preprocess_frame(registered(frame[:, :, None], spec), plain)
    assert np.abs(preprocess_frame(frame, spec) - expected).max() == 0.0
    (band,) = frame_to_bands(frame, spec, impl="opencv")
    assert np.abs(band.numpy()[0] - expected).max() == 0.0
    # in the reference pose the part is back where it was: far closer to the unturned part
    assert np.abs(expected - preprocess_frame(img, plain)).mean() < np.abs(preprocess_frame(frame, plain) - preprocess_frame(img, plain)).mean() / 3


def test_bad_registration_settings_are_one_line_errors():
    with pytest.raises(UserError, match="preprocess.register must be one of none, rigid"):
        Preprocess(register="affine")
    with pytest.raises(UserError, match="not a reference pose"):
        Preprocess(register="rigid", reference="bm90IGEgcG5n")
    with pytest.raises(UserError, match="holds no reference pose"):
        preprocess_frame(part(), Preprocess(size=(64, 64), register="rigid"))


def test_the_accuracy_driver_rescores_a_registered_run_on_its_weights(tmp_path, monkeypatch):
    """A scoring twin of a registered run is calibrated on its weights and its fitted reference pose."""
    import json

    from conftest import load_benchmark

    data = tmp_path / "data"
    turned_set(data, np.random.default_rng(2), good=12, defects=2)
    driver = load_benchmark("accuracy")
    monkeypatch.setattr(driver, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(driver, "JSONL", tmp_path / "results" / "accuracy.jsonl")
    base = ["preprocess.size=[64, 64]", "preprocess.register=rigid", "data.calibration_fraction=0.25", "train.device=cpu"]
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"runs": [
        {"name": "sq", "dataset": str(data), "config": "variation", "overrides": base},
        {"name": "msgms", "dataset": str(data), "config": "variation", "overrides": [*base, "model.map=msgms"]},
    ]}))
    trained = []
    real_train = driver.train
    monkeypatch.setattr(driver, "train", lambda cfg, d, out: trained.append(out.name) or real_train(cfg, d, out))
    assert driver.main([str(plan), "--runs", str(tmp_path / "runs")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results" / "accuracy.jsonl").read_text().splitlines()]
    assert trained == ["data-sq-seed1"] and rows[1]["weights_from"] == "data-sq-seed1"
    twin = read_config(tmp_path / "runs" / "data-msgms-seed1").preprocess
    assert twin.reference == read_config(tmp_path / "runs" / "data-sq-seed1").preprocess.reference is not None
