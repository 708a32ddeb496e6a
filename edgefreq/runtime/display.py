"""`--show`: a window with the live frame, the heatmap overlay and the verdict."""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from edgefreq.errors import UserError
from edgefreq.heatmap import overlay, to_bgr
from edgefreq.runtime.inspector import Inspection

WINDOW = "edgefreq"


def check_display() -> None:
    """A UserError unless OpenCV has a GUI backend and a display is there to show it on."""
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and "NONE" in gui[0].upper():
        raise UserError("--show needs OpenCV with a GUI: pip install opencv-python (this one is headless)")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("--show needs a display (no DISPLAY or WAYLAND_DISPLAY set)")


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


class Display:
    """Shows each inspection; `closed` turns true when the user presses q or Esc."""

    def __init__(self, threshold: float) -> None:
        check_display()
        # The map is per-pixel squared error and the score is about its mean, so a pixel 5x the
        # threshold's average error shows red.
        self.vmax = 5 * threshold
        self.closed = False
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)

    def show(self, inspection: Inspection) -> None:
        cv2.imshow(WINDOW, compose(inspection, self.vmax))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.closed = True

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)
