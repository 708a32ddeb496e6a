"""Options shared by every source, whatever its URI (the ROI belongs to the model's preprocessing)."""

from __future__ import annotations

from dataclasses import dataclass

from edgefreq.errors import UserError


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

    width: int = 0
    height: int = 0
    fps: float = 0.0
    loop: int = 1
    timeout: float = 5.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 10.0
    rate: float = 0.0
    max_frames: int = 0

    def __post_init__(self) -> None:
        for name in ("width", "height", "fps", "loop", "rate", "max_frames"):
            if getattr(self, name) < 0:
                raise UserError(f"source option {name} must be >= 0, got {getattr(self, name)}")
        if (self.width == 0) != (self.height == 0):
            raise UserError(f"source options width and height go together, got {self.width}x{self.height}")
        if self.timeout <= 0:
            raise UserError(f"source option timeout must be > 0 seconds, got {self.timeout}")
        if not 0 < self.reconnect_initial <= self.reconnect_max:
            raise UserError(
                "source options need 0 < reconnect_initial <= reconnect_max, "
                f"got {self.reconnect_initial} and {self.reconnect_max}"
            )
