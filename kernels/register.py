"""Registration (`preprocess.register: rigid`): a part that is not fixtured is moved back to the
reference pose of the good parts before it is compared.

Classical inspection aligns before it compares; a template or a reconstruction model trained on
parts in one pose sees a turned part as a defect everywhere. With `register: rigid`, `train` fits
the reference pose on the good TRAINING images only (`fit_reference`: the first image, then the
mean of all of them registered to it, twice) and stores it in the preprocessing spec
(`preprocess.reference`, a small gray PNG, base64), so it travels with the checkpoint, every
export's sidecar and the engine's preprocessing. Step 1b of kernels.preprocess then registers the
ROI of every image and frame to it (`register_frame`), on the CPU, before resize and FD: training,
calibration, evaluation (masks moved alike), export calibration and both runtime paths.

`estimate_pose(image, reference)` finds the rigid motion (rotation about the centre + shift) taking
`image` onto `reference`, both gray float32 on a small square grid (the pose of a part is a coarse
property). Parts seen from above are often close to round (a bottle), which leaves the Fourier
magnitude and the polar profile with no usable angle signal (tried first: the angle came out wrong
on most bottle images), so the angle is searched: every 10 degrees on a half-size grid, then every
degree within 10 degrees of the best. At each angle the image turned back is phase-correlated with
the reference (cv2.phaseCorrelate, Hanning window) for the shift, and the shifted image is scored
by its correlation coefficient with the reference on the central disk (the corners hold replicated
border); the best score wins. 57 small warps and correlations per image, ~10-20 ms on one CPU core
(benchmarks/results/detectors.md has the rows that measure what it buys).
"""

from __future__ import annotations

import base64
from functools import lru_cache

import cv2
import numpy as np

from edgefreq.errors import UserError

REGISTER_MODES = ("none", "rigid")
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


@lru_cache(maxsize=4)
def _window(size: int) -> np.ndarray:
    return cv2.createHanningWindow((size, size), cv2.CV_32F)


def _rotation(angle: float, size: int) -> np.ndarray:
    return cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, 1.0)


@lru_cache(maxsize=4)
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
    gray float32 of one square size (even); dx, dy in that grid's pixels; peak = the correlation
    coefficient with the reference on the central disk at the chosen angle (1 = the same image)."""
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


def encode_reference(reference: np.ndarray) -> str:
    """The reference as the spec stores it: an 8-bit gray PNG, base64 (a few kB)."""
    ok, png = cv2.imencode(".png", np.clip(np.rint(reference), 0, 255).astype(np.uint8))
    if not ok:
        raise RuntimeError("OpenCV could not encode the reference pose as PNG")
    return base64.b64encode(png.tobytes()).decode("ascii")


@lru_cache(maxsize=8)
def decode_reference(text: str) -> np.ndarray:
    """preprocess.reference -> the square float32 gray reference, or a UserError."""
    try:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(text, validate=True), np.uint8), cv2.IMREAD_GRAYSCALE)
    except (ValueError, TypeError):
        img = None
    if img is None or img.ndim != 2 or img.shape[0] != img.shape[1] or img.shape[0] < 16 or img.shape[0] % 2:
        raise UserError("preprocess.reference is not a reference pose (a base64 square gray PNG written by train): "
                        "train again with preprocess.register=rigid")
    return img.astype(np.float32)


def roi_pose(frame: np.ndarray, box: tuple[int, int, int, int], reference: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix that moves the ROI `box` (x, y, w, h) of `frame` into the reference pose."""
    x, y, w, h = box
    crop = frame[y : y + h, x : x + w]
    return pose_matrix((h, w), estimate_pose(to_gray_small(crop, reference.shape[0]), reference), reference.shape[0])


def warp_roi(frame: np.ndarray, box: tuple[int, int, int, int], m: np.ndarray, nearest: bool = False) -> np.ndarray:
    """A copy of `frame` whose ROI is warped by `m` (border replicated; masks: nearest, outside 0)."""
    x, y, w, h = box
    crop = np.ascontiguousarray(frame[y : y + h, x : x + w])
    if nearest:
        moved = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    else:
        moved = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = frame.copy()
    out[y : y + h, x : x + w] = moved.reshape(crop.shape)
    return out
