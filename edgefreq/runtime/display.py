"""The operator's picture of one inspection: the frame, the heatmap over it, the verdict on it
(the display:// sink's window, the web page's latest frame)."""

from __future__ import annotations

import cv2
import numpy as np

from edgefreq.heatmap import overlay, to_bgr
from edgefreq.runtime.record import Inspection


def compose(inspection: Inspection, vmax: float) -> np.ndarray:
    """The frame with the anomaly map blended over it and the verdict written on it."""
    image = inspection.view if inspection.view is not None else np.zeros((240, 320, 3), np.uint8)
    image = to_bgr(image).copy()
    d = inspection.decision
    if inspection.amap is not None:
        image = overlay(image, inspection.amap, 0.0, vmax or 1.0)  # one scale across frames
    colour = (0, 200, 0) if d.verdict == "OK" else (0, 0, 255)
    score = "n/a" if inspection.error else f"{d.score_norm:.2f}"
    cv2.putText(image, f"{d.verdict} {score}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2)
    return image
