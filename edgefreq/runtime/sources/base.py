"""The interface every source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Source(ABC):
    """A stream of frames named by a URI.

    read() -> image or None. For a finite source (file, folder, image) None means the end; for a
    live source (camera, stream) it means no usable frame this time (the driver timed out or
    failed): Capture counts it and reopens the source when frames stop for `timeout` seconds.
    read_labelled() -> (image, truth) or None is what Capture calls: truth is the ground truth
    label when the source knows it (the synthetic line: 0 good, 1 defect), else None.
    reopen() closes and opens the source again: a live source reconnects, a finite one restarts.
    """

    uri: str
    is_live: bool

    @abstractmethod
    def read(self) -> np.ndarray | None: ...

    def read_labelled(self) -> tuple[np.ndarray, int | None] | None:
        image = self.read()
        return None if image is None else (image, None)

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
