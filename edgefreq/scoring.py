"""Score images with a torch model in batches: the reference path for calibration and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgefreq.data import load_image
from edgefreq.kernels import Preprocess, decouple, preprocess_frame


@torch.no_grad()
def score_paths(
    model: torch.nn.Module,
    spec: Preprocess,
    paths: Sequence[Path],
    batch_size: int = 16,
    fd_impl: str = "auto",
    desc: str = "scoring",
) -> tuple[np.ndarray, np.ndarray]:
    """(scores N, anomaly maps N x H x W) for image files, preprocessed exactly as in training."""
    device = next(model.parameters()).device
    scores, maps = [], []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch", leave=False):
        chunk = paths[start : start + batch_size]
        x = torch.from_numpy(np.stack([preprocess_frame(load_image(p), spec) for p in chunk])).to(device)
        score, amap = model.score(decouple(x, spec.levels, fd_impl, spec.clip_high))
        scores.append(score.float().cpu().numpy())
        maps.append(amap.float().cpu().numpy())
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, *spec.size), np.float32)
    return np.concatenate(scores), np.concatenate(maps)
