"""`display://` (or `display://0`, jetson-utils' name): a window with each decision's frame, its
heatmap overlay and the verdict, as the runtime/display.py picture.

Needs OpenCV with a GUI backend (opencv-python, not -headless) and a display (DISPLAY or
WAYLAND_DISPLAY on Linux): without them opening the sink is one UserError, before the line starts.
The window is made, drawn and polled on the sink's own thread, so a slow screen never stalls
the line (decisions queue and the oldest are dropped, like any sink's). q or Esc in the window
stops the line as Ctrl-C does (SIGINT): the frames already captured are finished and the summary
printed.
"""

from __future__ import annotations

import os
import signal
import sys

import cv2
import numpy as np

from edgefreq.runtime.display import compose
from edgefreq.runtime.record import Inspection
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks.base import Item, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.uri import Uri

WINDOW = "edgefreq"
STOP_KEYS = (ord("q"), 27)  # q, Esc


def missing_display() -> str | None:
    """Why no window can be shown here, or None when OpenCV has a GUI and there is a display."""
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and "NONE" in gui[0].upper():
        return "needs OpenCV with a GUI: pip install opencv-python (this one is headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "needs a display (no DISPLAY or WAYLAND_DISPLAY set)"
    return None


class DisplaySink(Sink):
    """Shows every decision with its frame; q or Esc stops the line."""

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> DisplaySink:
        uri.options(())
        if uri.location not in ("", "0"):
            raise uri.error("OpenCV shows its window on the default display: write display:// (or display://0)")
        why = missing_display()
        if why is not None:
            raise uri.error(why)
        return cls(uri.text, options)

    def __init__(self, name: str, options: SinkOptions | None = None) -> None:
        super().__init__(name, options)
        self._window = False

    def _accept(self, decision: Decision, frame: np.ndarray | None, amap: np.ndarray | None) -> Item:
        return Item(
            decision,
            None if frame is None else np.array(frame, copy=True),
            None if amap is None else np.array(amap, copy=True),
        )

    def _deliver(self, item: Item) -> None:
        d = item.decision
        # The map is per-pixel squared error and the score about its mean, so a pixel 5x the
        # threshold's average error shows red.
        picture = compose(Inspection(d, None, item.amap, item.frame, d.reason), 5 * d.threshold)
        if not self._window:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
            self._window = True
        cv2.imshow(WINDOW, picture)
        if cv2.waitKey(1) & 0xFF in STOP_KEYS:
            signal.raise_signal(signal.SIGINT)  # the line's stop handler finishes and summarises

    def _run(self) -> None:
        try:
            super()._run()
        finally:  # on the thread that made the window: HighGUI windows belong to their thread
            if self._window:
                cv2.destroyWindow(WINDOW)
