"""Reading an image file: `load_image`, the one image reader, and the image extensions.

Training, calibration, evaluation and the line's image and folder sources all read files through
`load_image`, so a 16-bit PNG or a TIFF is the same array everywhere. The decode is OpenCV's, the
result is what a camera would hand over (uint8, H x W x 3 BGR or H x W gray), and the model input
is then made by `edgefreq.kernels.preprocess_frame`. No torch here: the line's file sources use it
on a machine without torch (the Python 3.10 check in .ci/torchfree.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from edgefreq.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# OpenCV logs its own WARN/ERROR lines while failing to decode a corrupt file; the UserError
# below already says what is wrong, so decoding runs with OpenCV's logging silenced. The lock
# keeps concurrent callers from restoring each other's log level in the wrong order.
_DECODE_LOCK = threading.Lock()


def is_image_file(path: Path) -> bool:
    """A supported image extension (any case), not a hidden file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _decode(data: bytes) -> np.ndarray | None:
    with _DECODE_LOCK:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        finally:
            cv2.utils.logging.setLogLevel(level)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8: H x W x 3 BGR for colour files, H x W for gray files.

    Normalisation of what OpenCV decodes (IMREAD_UNCHANGED, so no silent conversion):
    16-bit images are scaled to 8 bits (v / 257, full range), an alpha channel is dropped
    (OpenCV decodes gray + alpha as BGRA, so it comes back as BGR with equal channels).
    EXIF orientation is ignored, as a camera frame has none.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected an image file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read image ({exc.strerror})") from None
    if not data:
        raise UserError(f"{path}: image file is empty (0 bytes); replace or remove it")
    img = _decode(data)
    if img is None:
        raise UserError(f"{path}: not a readable image (corrupt, truncated or unsupported format); replace or remove it")
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise UserError(f"{path}: {img.dtype} images are not supported; save it as 8- or 16-bit PNG, JPEG or BMP")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise UserError(f"{path}: unsupported image layout {img.shape}; expected gray or 3-channel colour")
    return np.ascontiguousarray(img)
