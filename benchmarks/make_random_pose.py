"""A random-pose variant of a fixtured data set: every image rotated and shifted, masks alike.

    python benchmarks/make_random_pose.py [--data ../shared/data/mvtec_bottle] [--out ../derived-data/mvtec_bottle_pose]

Bottles are seen from above, so a part on an unfixtured line can lie at any angle: each train and
test image gets a rotation uniform in [0, 360) degrees about the image centre and a shift uniform
in +-`--shift` of the side, drawn from a generator seeded by `--seed` and the image's relative
path (deterministic, the same variant on every machine). Images are warped bilinearly with the
border pixels replicated (no black corners a detector could key on); masks get the same warp,
nearest-neighbour, outside = 0. The output keeps the MVTec AD layout and is written OUTSIDE the
repository (the data is for development and evaluation only; see ../shared/data/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np

from edgefreq.data import load_image, scan_dataset
from edgefreq.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DERIVED = ROOT.parent / "derived-data"


def pose(rel: str, seed: int, shift: float, size: tuple[int, int]) -> np.ndarray:
    """The 2 x 3 affine matrix of one image's pose, from its relative path."""
    digest = int.from_bytes(hashlib.sha256(f"{seed}:{rel}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(digest)
    angle = rng.uniform(0.0, 360.0)
    dx, dy = rng.uniform(-shift, shift, 2) * np.array([size[1], size[0]])
    m = cv2.getRotationMatrix2D((size[1] / 2.0, size[0] / 2.0), angle, 1.0)
    m[:, 2] += (dx, dy)
    return m


def warp(img: np.ndarray, m: np.ndarray, mask: bool) -> np.ndarray:
    h, w = img.shape[:2]
    if mask:
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def make(data: Path, out: Path, seed: int = 0, shift: float = 0.05) -> int:
    index = scan_dataset(data)
    if out.resolve().is_relative_to(ROOT):
        raise UserError(f"{out}: derived data must not be written inside the repository; choose a folder outside {ROOT}")
    count = 0
    samples = [(p, None) for p in index.train_good] + [(s.path, s.mask) for s in index.test]
    for path, mask in samples:
        rel = str(path.relative_to(index.root))
        img = load_image(path)
        m = pose(rel, seed, shift, img.shape[:2])
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target.with_suffix(".png")), warp(img, m, False))
        if mask is not None:
            mask_target = out / mask.relative_to(index.root)
            mask_target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_target), warp(load_image(mask), m, True))
        count += 1
    (out / "README.md").write_text(
        f"Random-pose variant of {data} made by benchmarks/make_random_pose.py (seed {seed}, shift +-{shift}): "
        "each image rotated uniformly in [0, 360) degrees and shifted, masks alike. Same license as the source.\n"
    )
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mvtec_bottle")
    p.add_argument("--out", type=Path, default=DERIVED / "mvtec_bottle_pose")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shift", type=float, default=0.05, help="largest shift, as a fraction of the side (default 0.05)")
    args = p.parse_args(argv)
    try:
        n = make(args.data, args.out, args.seed, args.shift)
    except UserError as exc:
        print(f"make_random_pose: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
