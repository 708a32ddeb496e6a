"""benchmarks/register_pose.py: the registration lever of the accuracy study recovers a known pose."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import register_pose  # noqa: E402

from edgefreq.errors import UserError  # noqa: E402


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


def test_make_registers_train_and_test_with_masks(tmp_path):
    data = tmp_path / "data"
    img = part()
    for k, angle in enumerate((0, 90, 200)):
        path = data / "train" / "good" / f"{k:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), moved(img, angle, 3 * k, -2 * k))
    defect = img.copy()
    cv2.circle(defect, (130, 40), 6, 0, -1)
    mask = np.zeros_like(img)
    cv2.circle(mask, (130, 40), 6, 255, -1)
    (data / "test" / "hole").mkdir(parents=True)
    (data / "ground_truth" / "hole").mkdir(parents=True)
    cv2.imwrite(str(data / "test" / "hole" / "000.png"), moved(defect, 120, 5, 5))
    cv2.imwrite(str(data / "ground_truth" / "hole" / "000_mask.png"), moved(mask, 120, 5, 5, fill=0))
    out = tmp_path / "out"
    assert register_pose.make(data, out) == 4
    test_img = cv2.imread(str(out / "test" / "hole" / "000.png"), cv2.IMREAD_GRAYSCALE)
    test_mask = cv2.imread(str(out / "ground_truth" / "hole" / "000_mask.png"), cv2.IMREAD_GRAYSCALE)
    first = cv2.imread(str(out / "train" / "good" / "000.png"), cv2.IMREAD_GRAYSCALE)
    # the defect's mask follows its image into the reference pose, which is the first training image's
    ys, xs = np.nonzero(test_mask)
    assert abs(xs.mean() - 130) < 3 and abs(ys.mean() - 40) < 3
    assert test_img[ys, xs].mean() < 60  # the hole lies under its mask
    assert np.abs(first.astype(float) - img.astype(float))[30:-30, 30:-30].mean() < 3.0


def test_make_refuses_to_write_into_the_repository(tmp_path):
    with pytest.raises(UserError, match="inside the repository"):
        register_pose.make(tmp_path, register_pose.ROOT / "out-registered")
