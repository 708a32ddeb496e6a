"""Probe: does a hand-made texture model (a filter bank + a Gaussian, no learning) detect defects
on the texture sets, where the template means nothing? The lever "a position-free texture model"
of the accuracy study, measured before building it into a model kind.

    python benchmarks/texture_probe.py magnetic_tile elpv_poly elpv_mono [--size 128]

Per pixel, F features of the gray image (normalized like every ELPV / magnetic-tile row: mean 0.5,
std 0.5): the image minus its Gaussian blur of sigma 16 (illumination removed), four difference-
of-Gaussian bands (sigma 0.7-1.4, 1.4-2.8, 2.8-5.6, 5.6-11.2) and the gradient magnitude after blurs
of sigma 1, 2 and 4; with "energy" also each feature's local mean and RMS (sigma 2), 2F features.
Fitted on the training part of the good images (the accuracy driver's split: data.split_seed 0,
20 % held out), nothing read from the test set:

- free:  one Gaussian (mean, full covariance) over every pixel of every image: position-free, the
         texture model; the map is the Mahalanobis distance;
- pixel: a mean and std per pixel and feature (the variation model on features instead of
         intensities); the map is the sum of squared z-scores.

The image score is the max of the map smoothed by a Gaussian of sigma 2 px (the `free` map ignores
an 8 px border, where the tile's edges are no texture). Image AUROC, defect = positive, with the
variation floor's rows of benchmarks/results/detectors.jsonl beside it. Closed form: no seeds.
Writes benchmarks/results/texture-probe.md. Set OMP_NUM_THREADS; the machine line says what ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefreq.data import load_image, scan_dataset, split_train_calibration  # noqa: E402
from edgefreq.evaluate import auroc  # noqa: E402
from edgefreq.models.maps import gaussian_taps, separable  # noqa: E402
from kernels import Preprocess, preprocess_frame  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
DOG = ((0.7, 1.4), (1.4, 2.8), (2.8, 5.6), (5.6, 11.2))
GRADIENT_SIGMAS = (1, 2, 4)
ILLUMINATION_SIGMA = 16
ENERGY_SIGMA = 2
MAP_SIGMA = 2
BORDER = 8
VARIANTS = (("free", False), ("free", True), ("pixel", False), ("pixel", True))


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return separable(x, gaussian_taps(sigma))


def features(x: torch.Tensor, energy: bool) -> torch.Tensor:
    """N x 1 x H x W normalized gray images -> N x F x H x W texture features."""
    out = [x - blur(x, ILLUMINATION_SIGMA)]
    out += [blur(x, a) - blur(x, b) for a, b in DOG]
    for sigma in GRADIENT_SIGMAS:
        xs = torch.nn.functional.pad(blur(x, sigma), (1, 1, 1, 1), mode="replicate")
        gx = xs[..., 1:-1, 2:] - xs[..., 1:-1, :-2]
        gy = xs[..., 2:, 1:-1] - xs[..., :-2, 1:-1]
        out.append(torch.sqrt(gx * gx + gy * gy + 1e-8))
    f = torch.cat(out, 1)
    return torch.cat([blur(f, ENERGY_SIGMA), torch.sqrt(blur(f * f, ENERGY_SIGMA) + 1e-8)], 1) if energy else f


def load(paths: list[Path], spec: Preprocess) -> torch.Tensor:
    return torch.from_numpy(np.stack([preprocess_frame(load_image(p), spec) for p in paths]))


def fit_map(train: torch.Tensor, kind: str, energy: bool):
    """The fitted map function: images -> N x H x W anomaly maps (before smoothing)."""
    f = features(train, energy)
    if kind == "pixel":
        mu, sd = f.mean(0, keepdim=True), f.std(0, keepdim=True) + 1e-3
        return lambda x: (((features(x, energy) - mu) / sd) ** 2).sum(1)
    flat = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()
    cov = torch.cov(flat.T) + 1e-6 * torch.eye(f.shape[1], dtype=torch.float64)
    mu, whiten = flat.mean(0).float(), torch.linalg.cholesky(torch.linalg.inv(cov)).float()
    return lambda x: (((features(x, energy).permute(0, 2, 3, 1) - mu) @ whiten) ** 2).sum(-1)


def image_scores(amap, x: torch.Tensor, border: int) -> np.ndarray:
    out = []
    for start in range(0, len(x), 64):
        m = blur(amap(x[start : start + 64])[:, None], MAP_SIGMA)[:, 0]
        if border:
            m = m[:, border:-border, border:-border]
        out.append(m.flatten(1).amax(1))
    return torch.cat(out).numpy()


def floor_rows(dataset: str) -> str:
    rows = [json.loads(line) for line in (RESULTS / "detectors.jsonl").read_text().splitlines() if line.strip()]
    found = [f"{r['name']} {r['image_auroc']:.3f}" for r in rows if r["dataset"] == dataset and r["name"] in ("variation", "variation-msgms")]
    return ", ".join(found) or "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+")
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    spec = Preprocess(size=(args.size, args.size), channels=1, mean=(0.5,), std=(0.5,))
    lines = []
    for name in args.datasets:
        index = scan_dataset(DATA / name)
        train_paths, _ = split_train_calibration(index.train_good, 0.2, 0)
        train = load(train_paths, spec)
        test = load([s.path for s in index.test], spec)
        labels = np.array([s.label for s in index.test])
        for kind, energy in VARIANTS:
            start = time.perf_counter()
            amap = fit_map(train, kind, energy)
            value = auroc(labels, image_scores(amap, test, BORDER if kind == "free" else 0))
            seconds = time.perf_counter() - start
            label = kind + ("-energy" if energy else "")
            lines.append(f"| {name} | {label} | {len(train_paths)} | {value:.3f} | {floor_rows(name)} | {seconds:.0f} s |")
            print(lines[-1], flush=True)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    text = "\n".join([
        "# Texture probe: a filter bank and a Gaussian on the texture sets",
        "",
        f"`OMP_NUM_THREADS={torch.get_num_threads()} python benchmarks/texture_probe.py {' '.join(args.datasets)} --size {args.size}`"
        f" on {machine}. What the variants are: the docstring of benchmarks/texture_probe.py.",
        "",
        "| data set | variant | training images | image AUROC | the floor (detectors.jsonl, seed 1) | fit + test time |",
        "|---|---|---|---|---|---|",
        *lines,
        "",
    ])
    (RESULTS / "texture-probe.md").write_text(text)


if __name__ == "__main__":
    main()
