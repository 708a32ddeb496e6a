"""A torch Dataset of preprocessed images: exactly what the runtime feeds the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgefreq.kernels.preprocess import Preprocess, preprocess_frame

from .images import load_image


class ImageDataset(Dataset):
    """Images -> float32 C x H x W tensors by `preprocess_frame(load_image(path), spec)`.

    Channel handling is the runtime's: a gray file feeding a 3-channel model is replicated, a
    colour file feeding a gray model is converted. With `cache` (the default, meant for the
    few hundred images of an inspection data set) each image is decoded and preprocessed once
    and kept in memory; with DataLoader workers every worker process keeps its own cache.
    """

    def __init__(self, paths: list[Path] | list[str], spec: Preprocess, cache: bool = True) -> None:
        self.paths = [Path(p) for p in paths]
        self.spec = spec
        self.cache = cache
        self._arrays: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = range(len(self.paths))[index]
        array = self._arrays.get(index)
        if array is None:
            array = preprocess_frame(load_image(self.paths[index]), self.spec)
            if not self.cache:
                return torch.from_numpy(array)
            self._arrays[index] = array
        return torch.from_numpy(array.copy())  # a copy, so a caller's in-place edit never reaches the cache
