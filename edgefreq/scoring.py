"""Score images with a torch model in batches: the reference path for calibration and evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgefreq.data import load_image
from edgefreq.kernels import Preprocess, check_frame, decouple, frame_pose, preprocess_frame


Transform = Callable[[torch.Tensor], torch.Tensor]


Geometry = tuple[tuple[int, int], "np.ndarray | None"]  # a file's H x W, and the pose registration moved it by


def _images(
    model: torch.nn.Module, spec: Preprocess, paths: Sequence[Path], batch_size: int, desc: str, geometry: list
) -> Iterator[torch.Tensor]:
    """N x C x H x W model inputs of `paths`, `batch_size` images at a time, preprocessed exactly as
    in training (before FD); appends each file's (H x W, pose) to `geometry` (the pose None
    without registration)."""
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch", leave=False):
        images = [check_frame(load_image(p)) for p in paths[start : start + batch_size]]
        poses = [frame_pose(img, spec) for img in images]
        geometry += [(img.shape[:2], pose) for img, pose in zip(images, poses)]
        yield torch.from_numpy(np.stack([preprocess_frame(img, spec, pose) for img, pose in zip(images, poses)])).to(device)


@torch.no_grad()
def score_paths(
    model: torch.nn.Module,
    spec: Preprocess,
    paths: Sequence[Path],
    batch_size: int = 16,
    fd_impl: str = "auto",
    desc: str = "scoring",
) -> tuple[np.ndarray, np.ndarray, list[Geometry]]:
    """(scores N, anomaly maps N x H x W, each file's (H x W, pose)) for image files; the geometry
    lets a caller fit ground-truth masks (edgefreq.data.load_mask) without reading or registering
    the images again."""
    scores, maps, geometry = [], [], []
    for x in _images(model, spec, paths, batch_size, desc, geometry):
        score, amap = model.score(decouple(x, spec.levels, fd_impl, spec.clip_high))
        scores.append(score.float().cpu().numpy())
        maps.append(amap.float().cpu().numpy())
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, *spec.size), np.float32), geometry
    return np.concatenate(scores), np.concatenate(maps), geometry


Parts = tuple[torch.Tensor, torch.Tensor | None]


@torch.no_grad()
def raw_parts_paths(
    model: torch.nn.Module, spec: Preprocess, paths: Sequence[Path], batch_size: int = 16, fd_impl: str = "auto",
    desc: str = "scoring", probe: Transform | None = None,
) -> tuple[Parts, Parts | None]:
    """(raw maps N x H x W, latent terms N or None) on the CPU, what the score statistics are fitted
    on; with `probe`, the same of `probe(images)` (e.g. forged copies), from the same decoded files."""
    out: list[list[tuple[torch.Tensor, torch.Tensor | None]]] = [[], []]
    for x in _images(model, spec, paths, batch_size, desc, []):
        for k, images in enumerate([x] if probe is None else [x, probe(x)]):
            raw, latent = model.raw_parts(decouple(images, spec.levels, fd_impl, spec.clip_high))
            out[k].append((raw.float().cpu(), None if latent is None else latent.float().cpu()))

    def joined(parts: list[tuple[torch.Tensor, torch.Tensor | None]]) -> Parts:
        latents = [lat for _, lat in parts]
        return torch.cat([raw for raw, _ in parts]), None if latents[0] is None else torch.cat(latents)

    return joined(out[0]), joined(out[1]) if probe is not None else None
