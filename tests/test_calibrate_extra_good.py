"""`edgefreq calibrate RUN --extra-good FOLDER`: operator feedback (false rejects filed by the web
page into FOLDER/train/good) joins the run's held-out images as calibration data."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from edgefreq.calibration import Calibration
from edgefreq.cli import main
from edgefreq.rundir import load_config, read_split
from edgefreq.runtime.sources.synthetic import SyntheticLine
from edgefreq.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("extra")
    line = SyntheticLine((64, 64), seed=0, defect_rate=0.0)
    (root / "data" / "train" / "good").mkdir(parents=True)
    for i in range(20):
        cv2.imwrite(str(root / "data" / "train" / "good" / f"{i:03d}.png"), line.render(i, None))
    cfg = load_config("cpu-budget", ["model.ngf=4", "model.ndf=4", "preprocess.size=[32, 32]", "train.epochs=1", "train.batch_size=4"])
    train(cfg, root / "data", root / "run")
    return root / "run"


def test_extra_good_images_are_calibration_data(run: Path, tmp_path: Path, capsys) -> None:
    held_out = len(read_split(run)[2])
    feedback = tmp_path / "feedback"
    (feedback / "train" / "good").mkdir(parents=True)
    (feedback / "test" / "defect").mkdir(parents=True)
    line = SyntheticLine((64, 64), seed=1, defect_rate=0.0)
    for i in range(4):
        cv2.imwrite(str(feedback / "train" / "good" / f"frame{i}.png"), line.render(100 + i, None))
        (feedback / "train" / "good" / f"frame{i}.json").write_text("{}")  # the record beside it is not an image
    cv2.imwrite(str(feedback / "test" / "defect" / "bad.png"), line.render(200, "scratch"))  # defects are not calibration data
    assert main(["calibrate", str(run), "--device", "cpu"]) == 0
    assert Calibration.load(run / "calibration.yaml").range.count == held_out
    assert main(["calibrate", str(run), "--device", "cpu", "--extra-good", str(feedback)]) == 0
    assert Calibration.load(run / "calibration.yaml").range.count == held_out + 4
    assert f"{held_out + 4} good images" in capsys.readouterr().out


def test_a_missing_extra_folder_is_one_line(run: Path, tmp_path: Path, capsys) -> None:
    before = (run / "calibration.yaml").read_bytes() if (run / "calibration.yaml").exists() else None
    assert main(["calibrate", str(run), "--device", "cpu", "--extra-good", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
    after = (run / "calibration.yaml").read_bytes() if (run / "calibration.yaml").exists() else None
    assert after == before  # nothing written
