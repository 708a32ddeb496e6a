"""The images the page shows: a frame with its heatmap and verdict (what the display:// sink shows) as JPEG.

Encoding runs on the web side's own worker thread, never on the line's, and at most once per
frame: `JpegCache` keeps the last encodings by decision number, so five browsers polling the live view
cost one encoding per new frame, not five.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import cv2

from edgefreq.runtime.display import compose

MAX_SIDE = 1280  # the page's images are scaled down to this (the feedback files keep the full frame)
QUALITY = 80


def jpeg(inspection, vmax: float, max_side: int = MAX_SIDE) -> bytes:
    """The frame as the model saw it (the ROI), the map over it, the verdict on it: JPEG bytes."""
    image = compose(inspection, vmax)
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


class JpegCache:
    """JPEG bytes per (kind, decision number), the newest `size` kept; thread-safe. `vmax()`: the heatmap's scale."""

    def __init__(self, vmax: Callable[[], float], max_side: int = MAX_SIDE, size: int = 64) -> None:
        self.vmax, self.max_side, self.size = vmax, max_side, size
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # how many encodings were done (tests, benchmark)

    def get(self, kind: str, number: int, inspection) -> bytes:
        key = (kind, number)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = jpeg(inspection, self.vmax(), self.max_side)
        with self._lock:
            self.encoded += 1
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return data
