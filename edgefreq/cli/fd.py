"""`edgefreq fd IMAGE --levels 3 --out DIR`: write what the model sees, one PNG per band (edgefreq.kernels)."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edgefreq.cli.options import positive_int, roi, size
from edgefreq.data import load_image
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess, frame_to_bands


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path, help="an image file (PNG, JPEG, BMP; gray or colour)")
    p.add_argument("--levels", type=positive_int("--levels"), default=2, help="number of frequency bands (default 2)")
    p.add_argument("--size", type=size("--size"), metavar="WxH", help="resize to the model's input size, width x height, first (default: keep)")
    p.add_argument("--roi", type=roi("--roi"), metavar="X,Y,W,H", help="crop this region first: left, top, width, height in image pixels")
    p.add_argument("--gray", action="store_true", help="convert to one channel, as a gray model sees it")
    p.add_argument("--out", type=Path, required=True, help="folder for the band PNGs (created)")


def band_to_png(band: np.ndarray, signed: bool) -> np.ndarray:
    """C x H x W float band -> viewable uint8 image (BGR or gray).

    The low band is shown as an image (min-max); a signed band is shown around mid-gray with a
    symmetric scale, so zero is 128 and the sign of a detail is visible.
    """
    img = band.transpose(1, 2, 0)
    if signed:
        peak = float(np.abs(img).max()) or 1.0
        out = 127.5 + 127.5 * img / peak
    else:
        lo, hi = float(img.min()), float(img.max())
        out = (img - lo) * (255.0 / ((hi - lo) or 1.0))
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out[:, :, ::-1] if out.shape[2] == 3 else out[:, :, 0]


def run(args: argparse.Namespace) -> int:
    frame = load_image(args.image)
    w, h = args.size or (args.roi[2:] if args.roi else frame.shape[1::-1])
    channels = 1 if args.gray or frame.ndim == 2 else 3
    spec = Preprocess(
        size=(h, w),  # Preprocess holds H, W (a tensor's order)
        roi=args.roi,
        channels=channels,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        levels=args.levels,
    )
    bands = frame_to_bands(frame, spec, impl="opencv")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{args.out}: cannot create the output folder ({exc.strerror})") from None
    names = ["low"] + [f"band{k}" for k in range(1, args.levels - 1)] + ["high"] if args.levels > 1 else ["image"]
    for k, (name, band) in enumerate(zip(names, bands)):
        path = args.out / f"{args.image.stem}_{k}_{name}.png"
        if not cv2.imwrite(str(path), band_to_png(band[0].numpy(), signed=k > 0)):
            raise UserError(f"{path}: could not write the PNG")
        print(path)
    return 0
