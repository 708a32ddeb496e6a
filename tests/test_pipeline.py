"""train -> calibrate -> eval on a tiny generated dataset; exact resume; user errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import load_benchmark, train_interrupted_then_resumed
from safetensors.torch import load_file

import edgefreq.train as train_mod
from edgefreq.calibrate import calibrate
from edgefreq.calibration import ThresholdPolicy
from edgefreq.config import to_dict
from edgefreq.errors import UserError
from edgefreq.evaluate import evaluate
from edgefreq.rundir import load_config, load_run

TINY = ["model.ngf=4", "model.ndf=4", "preprocess.size=[32, 32]", "train.batch_size=4", "train.epochs=2"]


def part(rng: np.random.Generator, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((48, 48, 3), 60, np.uint8)
    c = (24 + int(rng.integers(-2, 3)), 24 + int(rng.integers(-2, 3)))
    cv2.circle(img, c, 14, (200, 180, 40), -1)
    cv2.circle(img, c, 6, (30, 30, 30), -1)
    mask = np.zeros((48, 48), np.uint8)
    if defect:
        cv2.line(img, (10, 12), (38, 30), (255, 255, 255), 2)
        cv2.line(mask, (10, 12), (38, 30), 255, 2)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img, mask


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("line")
    rng = np.random.default_rng(0)
    for sub in ("train/good", "test/good", "test/scratch", "ground_truth/scratch"):
        (root / sub).mkdir(parents=True)
    for i in range(14):
        cv2.imwrite(str(root / f"train/good/{i:03d}.png"), part(rng, False)[0])
    for i in range(4):
        cv2.imwrite(str(root / f"test/good/{i:03d}.png"), part(rng, False)[0])
        img, mask = part(rng, True)
        cv2.imwrite(str(root / f"test/scratch/{i:03d}.png"), img)
        cv2.imwrite(str(root / f"ground_truth/scratch/{i:03d}_mask.png"), mask)
    return root


@pytest.mark.parametrize("kind", ["ocrgan", "wfdl"])
def test_train_calibrate_eval(dataset: Path, tmp_path: Path, kind: str) -> None:
    overrides = TINY + ([] if kind == "ocrgan" else ["model.kind=wfdl", "preprocess.levels=1", "model.wfdl_width=0.25"])
    cfg = load_config("cpu-budget", overrides)
    run = tmp_path / "run"
    train_mod.train(cfg, dataset, run)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    split = (run / "split.yaml").read_text()
    assert "calibration" in split
    model, loaded = load_run(run)
    assert loaded.model.kind == kind
    c = calibrate(run, ThresholdPolicy(), batch=8, device="cpu")
    assert c.range.count == 3  # 20 % of 14 good images held out, never trained on
    report = evaluate(run, dataset, run / "eval", batch=8, device="cpu")
    assert 0.0 <= report["image_auroc"] <= 1.0 and 0.0 <= report["pixel_auroc"] <= 1.0
    assert report["images"] == {"good": 4, "defect": 4}
    assert [d["defect"] for d in report["per_defect"]] == ["scratch"]
    for name in ("report.json", "report.md", "scores.png", "roc.png", "heatmaps.png"):
        assert (run / "eval" / name).stat().st_size > 0


def test_interrupted_training_resumes_exactly(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = load_config("cpu-budget", TINY + ["train.epochs=3"])
    straight = tmp_path / "straight"
    train_mod.train(cfg, dataset, straight)

    broken = tmp_path / "broken"
    train_interrupted_then_resumed(monkeypatch, cfg, dataset, broken)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(broken / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a)
    assert len((broken / "train_log.jsonl").read_text().splitlines()) == 3


def test_other_config_in_existing_run_is_refused(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_mod.train(load_config("cpu-budget", TINY + ["train.epochs=1"]), dataset, run)
    with pytest.raises(UserError, match="another config"):
        train_mod.train(load_config("cpu-budget", TINY + ["model.ngf=8"]), dataset, run)


def test_user_errors(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown key 'ngff'"):
        load_config("cpu-budget", ["model.ngff=3"])
    with pytest.raises(UserError, match="no such config"):
        load_config("nonexistent")
    with pytest.raises(UserError, match="section.key=value"):
        load_config("cpu-budget", ["epochs"])
    with pytest.raises(UserError, match="not a run folder"):
        load_run(tmp_path)
    run = tmp_path / "run"
    train_mod.train(load_config("cpu-budget", TINY + ["train.epochs=1"]), dataset, run)
    with pytest.raises(UserError, match="not calibrated"):
        evaluate(run, dataset, run / "eval")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    for argv in (
        ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")],
        ["calibrate", str(tmp_path)],
        ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "model.kind=vae"],
    ):
        proc = subprocess.run([sys.executable, "-m", "edgefreq", *argv], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_accuracy_driver_rows_resume_and_reuse_weights(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """One row per (dataset, name, seed); a rerun skips them; a score-reduction variant evaluates
    the same weights instead of training again, and its scores are the max of the maps."""
    driver = load_benchmark("accuracy")
    monkeypatch.setattr(driver, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(driver, "JSONL", tmp_path / "results" / "accuracy.jsonl")
    overrides = [*TINY, "train.device=cpu"]
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"runs": [
        {"name": "mean", "dataset": str(dataset), "config": "cpu-budget", "overrides": overrides},
        {"name": "max", "dataset": str(dataset), "config": "cpu-budget", "overrides": [*overrides, "model.score_reduce=max"]},
        {"name": "wider", "dataset": str(dataset), "config": "cpu-budget", "overrides": [*overrides, "model.ngf=8"]},
    ]}))
    runs = tmp_path / "runs"
    trained = []
    real_train = driver.train
    monkeypatch.setattr(driver, "train", lambda cfg, data, out: trained.append(out.name) or real_train(cfg, data, out))
    assert driver.main([str(plan), "--runs", str(runs)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results" / "accuracy.jsonl").read_text().splitlines()]
    assert [(r["name"], r["seed"]) for r in rows] == [("mean", 1), ("max", 1), ("wider", 1)]
    assert trained == [f"{dataset.name}-mean-seed1", f"{dataset.name}-wider-seed1"]
    assert rows[1]["weights_from"] == f"{dataset.name}-mean-seed1" and rows[0]["weights_from"] is None
    mean_run, max_run = runs / f"{dataset.name}-mean-seed1", runs / f"{dataset.name}-max-seed1"
    assert (mean_run / "model.safetensors").read_bytes() == (max_run / "model.safetensors").read_bytes()
    mean_report = json.loads((mean_run / "eval" / "report.json").read_text())
    max_report = json.loads((max_run / "eval" / "report.json").read_text())
    assert mean_report["scores"] != max_report["scores"]
    table = (tmp_path / "results" / "accuracy.md").read_text()
    assert f"weights of {dataset.name}-mean-seed1" in table and table.count("| line") == 6  # 3 in the seed table, 3 runs
    lo, hi = rows[0]["image_auroc_ci95"]
    assert 0.0 <= lo <= rows[0]["image_auroc"] <= hi <= 1.0
    assert driver.main([str(plan), "--runs", str(runs)]) == 0  # everything recorded: nothing runs
    assert len((tmp_path / "results" / "accuracy.jsonl").read_text().splitlines()) == 3
    assert len(trained) == 2

    # operating points: the default policy reproduces eval's own rates; looser policies escape less
    points = load_benchmark("operating_points")
    rows = points.operating_points(mean_run)
    assert rows[0]["policy"] == "max + 0.1 * (max - min)"
    assert (rows[0]["false_reject_rate"], rows[0]["escape_rate"]) == (mean_report["false_reject_rate"], mean_report["escape_rate"])
    assert rows[1]["threshold"] < rows[0]["threshold"] and rows[1]["escape_rate"] <= rows[0]["escape_rate"]
    assert points.main([str(mean_run), "--out", str(tmp_path / "points.md")]) == 0
    assert (tmp_path / "points.md").read_text().count(f"| {mean_run.name} |") == len(points.COMPARED_POLICIES)
    assert rows[0]["forged_escape_rate"] == yaml.safe_load((mean_run / "validation.yaml").read_text())["forged_escape_rate"]
    assert points.main([str(tmp_path)]) == 2
    uncalibrated = tmp_path / "uncalibrated"
    shutil.copytree(mean_run / "eval", uncalibrated / "eval")
    assert points.main([str(uncalibrated)]) == 2


def test_shipped_edge_config_is_the_measured_study_row() -> None:
    """configs/edge.yaml is recommended on the strength of the detectors study's row
    variation-seg-bs-msgms on bottle (the template with a segmentation head trained on blobs and
    scratches, MSGMS map, session 5's choice rule): it must stay exactly that configuration, or the
    accuracy it quotes is not its own."""
    plan = yaml.safe_load((Path(__file__).resolve().parents[1] / "benchmarks" / "plans" / "detectors.yaml").read_text())
    row = next(r for r in plan["runs"] if r["name"] == "variation-seg-bs-msgms" and r["dataset"] == "mvtec_bottle")
    assert row["config"] == "variation"  # the plan measures the base, so editing edge.yaml cannot move its rows
    assert to_dict(load_config("edge")) == to_dict(load_config(row["config"], row.get("overrides", [])))
