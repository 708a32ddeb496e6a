"""Finite sources: a video file, a single image, a folder of images; each played `loop` times,
then a read raises EndOfStream.

    file:///path/to/video.mp4, file://relative/folder, or just the path
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from pathlib import Path

import cv2
import numpy as np

from edgefreq.image_file import IMAGE_EXTENSIONS, load_image
from edgefreq.errors import UserError
from edgefreq.runtime.uri import Uri, uri_error

from .base import EndOfStream, Sample, Source
from .options import SourceOptions

log = logging.getLogger("edgefreq")


class _Finite(Source):
    """Counts passes: `loop` passes in all, 0 = forever."""

    is_live = False

    def __init__(self, uri: str, loop: int) -> None:
        super().__init__(uri)
        self._loop = loop
        self._passes = 0

    def _more_passes(self) -> bool:
        """Count one finished pass; True when another one is due."""
        self._passes += 1
        return self._loop == 0 or self._passes < self._loop

    def reopen(self) -> None:
        """Start again from the first frame of the first pass."""
        self.close()
        self._passes = 0
        self._open()

    @abstractmethod
    def _open(self) -> None:
        """Open (or reopen) the file or folder; a UserError when it cannot be read."""


class VideoFileSource(_Finite):
    """A video file decoded by OpenCV (FFMPEG): mp4, avi, mkv, mov, ..."""

    def __init__(self, uri: str, path: Path, loop: int) -> None:
        super().__init__(uri, loop)
        self._path = path
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        self._open()

    def _open(self) -> None:
        cap = cv2.VideoCapture(str(self._path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            cap.release()
            raise uri_error("source", self.uri, f"cannot decode {self._path} as a video (unsupported format or corrupt file)")
        self._cap, self._pending = cap, first

    def read(self) -> np.ndarray:
        if self._pending is not None:
            image, self._pending = self._pending, None
            return image
        if self._cap is None:
            raise EndOfStream(self.uri)
        ok, image = self._cap.read()
        if ok:
            return image
        self.close()
        if not self._more_passes():
            raise EndOfStream(self.uri)
        self._open()
        return self.read()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._pending = None


class ImageFileSource(_Finite):
    """One image, given once per pass."""

    def __init__(self, uri: str, path: Path, loop: int) -> None:
        super().__init__(uri, loop)
        self._path = path
        self._image: np.ndarray | None = None
        self._open()

    def _open(self) -> None:
        try:
            self._image = load_image(self._path)  # the one image reader: training's, eval's, the line's
        except UserError as exc:
            raise uri_error("source", self.uri, f"cannot read {self._path.name}: {str(exc).removeprefix(f'{self._path}: ')}") from None

    def read(self) -> np.ndarray:
        if self._image is None:
            raise EndOfStream(self.uri)
        image = self._image.copy()
        if not self._more_passes():
            self._image = None
        return image

    def close(self) -> None:
        self._image = None


def _natural_key(path: Path) -> list[int | str]:
    """img2.png before img10.png."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class ImageFolderSource(_Finite):
    """The images of a folder in natural name order, each file one part.

    Every file listed gets a sample named after it: an unreadable one (corrupt, deleted since it was
    listed, not 8-bit) is a sample with the reason instead of an image, so it gets a fail-safe NOK
    decision and is counted, never skipped in silence. Files that appear while a pass runs are
    taken before the pass ends (the folder is listed again when the pass runs out). A pass that
    could read none of its files stops the source when another pass would follow.
    """

    def __init__(self, uri: str, folder: Path, loop: int) -> None:
        super().__init__(uri, loop)
        self._folder = folder
        self._files: list[Path] = []
        self._seen: set[str] = set()
        self._next = 0
        self._read_this_pass = 0
        self._open()

    def _list(self) -> list[Path]:
        try:
            files = [p for p in self._folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        except OSError as exc:
            raise uri_error("source", self.uri, f"cannot list {self._folder} ({exc.strerror})") from None
        return sorted(files, key=_natural_key)

    def _open(self) -> None:
        files = self._list()
        if not files:
            raise uri_error("source", self.uri, f"no images ({' '.join(IMAGE_EXTENSIONS)}) in folder {self._folder}")
        self._start_pass(files)

    def _start_pass(self, files: list[Path]) -> None:
        self._files, self._seen = files, {p.name for p in files}
        self._next = self._read_this_pass = 0

    def read_sample(self) -> Sample:
        if not self._files:
            raise EndOfStream(self.uri)
        if self._next == len(self._files):
            new = [p for p in self._list() if p.name not in self._seen]  # arrived during this pass
            if new:
                self._files.extend(new)
                self._seen.update(p.name for p in new)
            elif not self._end_pass():
                raise EndOfStream(self.uri)
        path = self._files[self._next]
        self._next += 1
        try:
            image = load_image(path)
        except UserError as exc:
            why = "deleted before it could be read" if not path.exists() else str(exc).removeprefix(f"{path}: ")
            log.warning("%s: %s: %s; decided NOK without inspection", self.uri, path.name, why)
            return Sample(None, name=path.name, error=f"{path.name}: {why}")
        self._read_this_pass += 1
        return Sample(image, name=path.name)

    def _end_pass(self) -> bool:
        """Finish a pass; True when another one starts."""
        if not self._more_passes():
            self._files = []
            return False
        if self._read_this_pass == 0:
            raise uri_error("source", self.uri, f"none of the {len(self._files)} images in {self._folder} could be read")
        self._start_pass(self._list() or self._files)
        return True

    def read(self) -> np.ndarray:
        """The next readable image (unreadable files are skipped here; read_sample reports them)."""
        while (image := self.read_sample().image) is None:
            pass
        return image

    def close(self) -> None:
        self._files = []


def open_path(uri: Uri, options: SourceOptions) -> Source:
    """file://PATH or a plain path: a folder of images, an image file, or a video file."""
    uri.options(())
    path = uri.path("file:///path/to/video.mp4, an image or a folder")
    if path.is_dir():
        return ImageFolderSource(uri.text, path, options.loop)
    if not path.exists():
        raise uri.error(f"no such file or folder {path}")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageFileSource(uri.text, path, options.loop)
    return VideoFileSource(uri.text, path, options.loop)
