"""Score images with a torch model in batches: the reference path for calibration and evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgefreq.data import load_image
from edgefreq.kernels import Preprocess, decouple, preprocess_frame


Transform = Callable[[torch.Tensor], torch.Tensor]


def _batches(
    model: torch.nn.Module, spec: Preprocess, paths: Sequence[Path], batch_size: int, fd_impl: str, desc: str, shapes: list,
    transform: Transform | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Bands of `paths`, `batch_size` images at a time, preprocessed exactly as in training (then
    `transform`ed, e.g. forged, before FD); appends each file's H x W to `shapes`."""
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch", leave=False):
        images = [load_image(p) for p in paths[start : start + batch_size]]
        shapes += [img.shape[:2] for img in images]
        x = torch.from_numpy(np.stack([preprocess_frame(img, spec) for img in images])).to(device)
        if transform is not None:
            x = transform(x)
        yield decouple(x, spec.levels, fd_impl, spec.clip_high)


@torch.no_grad()
def score_paths(
    model: torch.nn.Module,
    spec: Preprocess,
    paths: Sequence[Path],
    batch_size: int = 16,
    fd_impl: str = "auto",
    desc: str = "scoring",
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(scores N, anomaly maps N x H x W, each file's H x W) for image files; the file sizes let a
    caller fit ground-truth masks without reading images again."""
    scores, maps, shapes = [], [], []
    for bands in _batches(model, spec, paths, batch_size, fd_impl, desc, shapes):
        score, amap = model.score(bands)
        scores.append(score.float().cpu().numpy())
        maps.append(amap.float().cpu().numpy())
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, *spec.size), np.float32), shapes
    return np.concatenate(scores), np.concatenate(maps), shapes


@torch.no_grad()
def raw_parts_paths(
    model: torch.nn.Module, spec: Preprocess, paths: Sequence[Path], batch_size: int = 16, fd_impl: str = "auto", desc: str = "scoring",
    transform: Transform | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(raw maps N x H x W, latent terms N or None) on the CPU: what the score statistics are fitted on."""
    raws, latents = [], []
    for bands in _batches(model, spec, paths, batch_size, fd_impl, desc, [], transform):
        raw, latent = model.raw_parts(bands)
        raws.append(raw.float().cpu())
        latents.append(None if latent is None else latent.float().cpu())
    latent = None if latents[0] is None else torch.cat(latents)
    return torch.cat(raws), latent
