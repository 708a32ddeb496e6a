"""One captured frame, as the camera loop sees it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """A frame from a source.

    frame_id: consecutive per captured frame (a dropped frame leaves a gap in the ids).
    timestamp: time.time() when it was captured.
    image: uint8, H x W x 3 BGR or H x W gray.
    source: the URI it came from.
    truth: ground truth when the source knows it (synthetic line: 0 good, 1 defect), else None.
    """

    frame_id: int
    timestamp: float
    image: np.ndarray
    source: str
    truth: int | None = None
