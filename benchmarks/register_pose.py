"""Registration before FD, measured: a copy of a data set with every image moved to the reference pose.

    python benchmarks/register_pose.py [--data ../derived-data/mvtec_bottle_pose] [--out ../derived-data/mvtec_bottle_pose_registered]

Classical inspection aligns before it compares; a template or a reconstruction model trained on
parts in one pose sees a turned part as a defect everywhere. This is the accuracy study's lever for
parts that are not fixtured (issue 15), measured before it enters the line: the reference pose is
fitted on the set's good TRAINING images only (`fit_reference`: the first image, then the mean of
all of them registered to it, twice), then every train and test image is registered to it on its
own (no test image is seen by the fit) and written, masks moved alike, OUTSIDE the repository
(../derived-data, where benchmarks/accuracy.py finds it). Rows: benchmarks/plans/detectors.yaml.

`estimate_pose(image, reference)` finds the rigid motion (rotation about the centre + shift) taking
`image` onto `reference`, both gray float32 on a small square grid (the pose of a part is a coarse
property). Parts seen from above are often close to round (a bottle), which leaves the Fourier
magnitude and the polar profile with no usable angle signal (tried first: the angle came out wrong on
most bottle images), so the angle is searched: every 10 degrees on a half-size grid, then every degree
within 10 degrees of the best. At each angle the image turned back is phase-correlated with the
reference (cv2.phaseCorrelate, Hanning window) for the shift, and the shifted image is scored by its
correlation coefficient with the reference on the central disk (the corners hold replicated border);
the best score wins. 57 small warps and correlations per image, ~10-20 ms on one CPU core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from edgefreq.data import load_image, scan_dataset
from edgefreq.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_random_pose import DERIVED, ROOT, warp  # noqa: E402  (the same warps, masks alike)

REGISTRATION_SIZE = 128  # pixels per side of the grid the pose is estimated on
COARSE_STEP = 10.0  # degrees between the angles tried on the half-size grid
FINE_STEP = 1.0  # degrees between the angles tried around the best coarse one, on the full grid


def to_gray_small(image: np.ndarray, size: int = REGISTRATION_SIZE) -> np.ndarray:
    """An H x W (x C) uint8 or float image as a size x size float32 gray image for pose estimation."""
    img = image.astype(np.float32)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif img.ndim == 3:
        img = img[:, :, 0]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _window(size: int) -> np.ndarray:
    return cv2.createHanningWindow((size, size), cv2.CV_32F)


def _rotation(angle: float, size: int) -> np.ndarray:
    return cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, 1.0)


def _centre_disk(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    return (xx * xx + yy * yy) <= (0.45 * size) ** 2


def _best_angle(image: np.ndarray, reference: np.ndarray, angles) -> tuple[float, float, float, float]:
    """Of `angles`, the one whose rotation of `image`, shifted by its phase correlation, matches
    `reference` best: (angle, dx, dy, correlation coefficient on the central disk)."""
    size = reference.shape[0]
    window = _window(size)
    disk = _centre_disk(size)
    ref = reference[disk] - reference[disk].mean()
    ref /= np.linalg.norm(ref) + 1e-12
    best = (0.0, 0.0, 0.0, -np.inf)
    for angle in angles:
        m = _rotation(angle, size)
        turned = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        (dx, dy), _ = cv2.phaseCorrelate(turned, reference, window)
        m[:, 2] += (dx, dy)
        moved = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[disk]
        moved = moved - moved.mean()
        score = float(moved @ ref) / (np.linalg.norm(moved) + 1e-12)
        if score > best[3]:
            best = (float(angle) % 360.0, dx, dy, score)
    return best


def estimate_pose(image: np.ndarray, reference: np.ndarray) -> tuple[float, float, float, float]:
    """(angle in degrees, dx, dy, peak) of the rigid motion taking `image` onto `reference`, both
    gray float32 of one square size (even); dx, dy in that grid's pixels; peak = the phase-correlation
    response at the chosen angle (1 = the same image)."""
    half = reference.shape[0] // 2
    coarse = _best_angle(
        cv2.resize(image, (half, half), interpolation=cv2.INTER_AREA),
        cv2.resize(reference, (half, half), interpolation=cv2.INTER_AREA),
        np.arange(0.0, 360.0, COARSE_STEP),
    )
    fine = np.arange(-COARSE_STEP, COARSE_STEP + 1e-6, FINE_STEP) + coarse[0]
    return _best_angle(image, reference, fine)


def pose_matrix(image_shape: tuple[int, int], pose: tuple[float, float, float, float], size: int = REGISTRATION_SIZE) -> np.ndarray:
    """The 2 x 3 affine matrix that applies `pose` (estimated on the size x size grid) to an image of
    `image_shape` (h, w): rotation about the image centre, then the shift scaled to its pixels."""
    h, w = image_shape
    angle, dx, dy, _ = pose
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    m[:, 2] += (dx * w / size, dy * h / size)
    return m


def fit_reference(images, size: int = REGISTRATION_SIZE, rounds: int = 2) -> np.ndarray:
    """The reference pose of good parts: the first image, then the mean of all images registered to it."""
    small = [to_gray_small(img, size) for img in images]  # any iterable of H x W (x C) images
    if not small:
        raise ValueError("fit_reference needs at least one image")
    reference = small[0]
    for _ in range(rounds):
        moved = []
        for img in small:
            pose = estimate_pose(img, reference)
            moved.append(cv2.warpAffine(img, pose_matrix((size, size), pose, size), (size, size),
                                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        reference = np.mean(moved, axis=0).astype(np.float32)
    return reference


def make(data: Path, out: Path) -> int:
    if out.resolve().is_relative_to(ROOT):
        raise UserError(f"{out}: derived data must not be written inside the repository; choose a folder outside {ROOT}")
    index = scan_dataset(data)
    if not index.train_good:
        raise UserError(f"{data}: no good training images to fit the reference pose on")
    reference = fit_reference(load_image(p) for p in index.train_good)
    count = 0
    for path, mask in [(p, None) for p in index.train_good] + [(s.path, s.mask) for s in index.test]:
        img = load_image(path)
        m = pose_matrix(img.shape[:2], estimate_pose(to_gray_small(img), reference))
        target = out / path.relative_to(index.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target.with_suffix(".png")), warp(img, m, False))
        if mask is not None:
            mask_target = out / mask.relative_to(index.root)
            mask_target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_target), warp(load_image(mask), m, True))
        count += 1
    (out / "README.md").write_text(
        f"{data} registered to the reference pose of its good training images by benchmarks/register_pose.py "
        "(rotation searched every 10 then 1 degrees, shift by phase correlation). Same license as the source.\n"
    )
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DERIVED / "mvtec_bottle_pose")
    p.add_argument("--out", type=Path, default=DERIVED / "mvtec_bottle_pose_registered")
    args = p.parse_args(argv)
    try:
        n = make(args.data, args.out)
    except UserError as exc:
        print(f"register_pose: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} registered images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
