"""The interface every source implements, and how a read ends: a frame, a timeout, or the end."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One item of a source as Capture takes it.

    image: uint8 H x W gray or H x W x 3 BGR; None when this item could not be read, and then
        `error` says why: it still gets a (fail-safe NOK) decision, because it is a part.
    truth: the ground truth label when the source knows it (synthetic line: 0 good, 1 defect).
    name: where in the source it came from (a folder's file name), added to the record's source.
    """

    image: np.ndarray | None
    truth: int | None = None
    name: str | None = None
    error: str | None = None


class EndOfStream(Exception):
    """Raised by a read when the source has no more frames: a file, folder or image after its last
    pass. Capture.get raises it too, once the frames captured before the end are handed out."""


class Source(ABC):
    """A stream of frames named by a URI (after jetson-utils' videoSource: OK, TIMEOUT, EOS).

    read() -> the image, or None when no usable frame came this time (a live camera's driver
    timed out or failed: Capture counts it and reopens the source when frames stop for `timeout`
    seconds); raises EndOfStream when a finite source (file, folder, image) is over.
    read_sample() -> Sample or None is what Capture calls: the image with its ground truth, its
    name inside the source, or the reason it could not be read (see Sample); None and
    EndOfStream as for read().
    reopen() closes and opens the source again: a live source reconnects, a finite one restarts.
    """

    is_live: bool

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @abstractmethod
    def read(self) -> np.ndarray | None: ...

    def read_sample(self) -> Sample | None:
        image = self.read()
        return None if image is None else Sample(image)

    def lost(self) -> int:
        """Frames the device or its link lost before read() could give them (a GenICam camera's
        incomplete buffers and frame-id gaps); never captured, so counted here. 0 by default."""
        return 0

    def waiting(self) -> bool:
        """True when the last read() gave None because a healthy triggered camera is waiting for
        its trigger: Capture then counts nothing and does not take the wait for a stall."""
        return False

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def reopen(self) -> None: ...

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
