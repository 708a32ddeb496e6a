"""`edgefreq calibrate RUN --extra-good FOLDER`: operator feedback (false rejects filed by the web
page into FOLDER/train/good) joins the run's held-out images as calibration data."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from conftest import train_tiny
from edgefreq.calibration import Calibration
from edgefreq.cli import main
from edgefreq.rundir import read_split
from edgefreq.runtime.sources.synthetic import SyntheticLine


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("extra"))


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
