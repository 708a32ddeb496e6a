"""One captured frame, as the camera loop sees it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """A frame from a source.

    frame_id: consecutive per captured frame (a dropped frame leaves a gap in the ids).
    timestamp: time.time() when it was captured.
    image: uint8, H x W x 3 BGR or H x W gray; None for a part whose image could not be read.
    source: the URI it came from, with the file name for a folder (`folder/0001.png`).
    truth: ground truth when the source knows it (synthetic line: 0 good, 1 defect), else None.
    error: why the image could not be read (then image is None): the part is decided NOK uninspected.
    """

    frame_id: int
    timestamp: float
    image: np.ndarray | None
    source: str
    truth: int | None = None
    error: str | None = None
