"""Data: image files, the MVTec AD layout, the train/calibration split, datasets, forged anomalies."""

from .forge import ForgeConfig, forge_batch, forge_mixed, forge_with_mask
from .image_dataset import ImageDataset
from edgefreq.image_file import IMAGE_EXTENSIONS, load_image

from .images import load_mask
from .layout import DatasetIndex, Sample, scan_dataset
from .split import split_train_calibration

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetIndex",
    "ForgeConfig",
    "ImageDataset",
    "Sample",
    "forge_batch",
    "forge_mixed",
    "forge_with_mask",
    "load_image",
    "load_mask",
    "scan_dataset",
    "split_train_calibration",
]
