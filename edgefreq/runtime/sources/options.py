"""Options shared by every source, whatever its URI (the ROI belongs to the model's preprocessing)."""

from __future__ import annotations

from dataclasses import dataclass

from edgefreq.errors import UserError
from edgefreq.runtime.uri import bounded, check_options, check_order


@dataclass(frozen=True)
class SourceOptions:
    """How to open and pace a source.

    width, height, fps: requested from cameras (0 = the camera's default; csi:// uses 1280x720 at
        30 fps then); width x height is also the synthetic line's frame size when its URI gives none.
    loop: passes over a file or folder (0 = forever).
    timeout: seconds without a good frame before a live source counts as stalled and is reopened;
        also the open / read timeout given to network streams.
    reconnect_initial, reconnect_max: exponential backoff between reopen attempts, seconds.
    rate: frames per second emitted by file, folder and synthetic sources (0 = as fast as possible);
        applied by Capture, live sources run at their own pace.
    max_frames: stop after this many captured frames (0 = no limit); applied by Capture.
    """

    width: int = bounded(0, low=0)
    height: int = bounded(0, low=0)
    fps: float = bounded(0.0, low=0)
    loop: int = bounded(1, low=0)
    timeout: float = bounded(5.0, low=0, above=True)
    reconnect_initial: float = bounded(0.5, low=0, above=True)
    reconnect_max: float = 10.0
    rate: float = bounded(0.0, low=0)
    max_frames: int = bounded(0, low=0)

    def __post_init__(self) -> None:
        check_options("source", self)
        if (self.width == 0) != (self.height == 0):
            raise UserError(f"source options width and height go together, got {self.width}x{self.height}")
        check_order("source", self, "reconnect_initial", "reconnect_max")
