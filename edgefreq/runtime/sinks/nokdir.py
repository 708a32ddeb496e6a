"""NOK archive: `nokdir:///path/to/dir?max_mb=200`, the evidence for every rejected part.

For each NOK decision (OK decisions are ignored) it writes, named by capture time (UTC) and
frame id so that names sort oldest first:

    20250131T142501.123Z_00004711.json          the decision record
    20250131T142501.123Z_00004711.png           the frame (when one was submitted)
    20250131T142501.123Z_00004711_heatmap.png   the frame with the anomaly map blended on top
                                                (when a frame and a map were submitted)

The frame is uint8, gray (HxW) or BGR (HxWx3, OpenCV order). The anomaly map (HxW, any size and
scale; leading axes of size 1 are dropped) is stretched between its own min and max, coloured
with the JET colormap (blue low, red high) and resized onto the frame: pass the frame the map was
computed from (the ROI crop) for the two to line up. Files appear atomically (written to a
hidden temporary name, then renamed).

The folder is capped at `max_mb` megabytes (1 MB = 10^6 bytes): after each write the oldest
records (all files of a frame together) are removed until it fits; the newest record is always
kept. Only files with this naming are counted or ever removed.

A full disk: a write that fails removes its temporary file at once (none is left to fill the disk
further), and when the disk is full the oldest records are removed to make room for the newest,
as the cap would. Temporary files a crash left behind are removed at start. The queue holds at
most `queue_mb` of images (SinkOptions). At close, records still queued when time runs out are
written without their images (the JSON is small), so no NOK decision goes unrecorded; they are
reported as unsent.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from edgefreq.heatmap import overlay, to_bgr
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks.base import Item, PermanentError, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.uri import Uri, uri_error

DEFAULT_MAX_MB = 200.0
_NAME = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z_\d+)(\.json|\.png|_heatmap\.png)$")
_TEMPORARY = re.compile(r"^\.(\d{8}T\d{6}\.\d{3}Z_\d+)(\.json|\.png|_heatmap\.png)\.tmp$")

log = logging.getLogger("edgefreq.sinks")


def record_stem(decision: Decision) -> str:
    """`YYYYmmddTHHMMSS.mmmZ_FRAMEID`: sorts by capture time, unique per frame."""
    seconds = int(decision.capture_ts)
    millis = int(round((decision.capture_ts - seconds) * 1000))
    if millis == 1000:
        seconds, millis = seconds + 1, 0
    frame = f"{decision.frame_id:08d}" if decision.frame_id is not None else f"part-{decision.part_id}"  # no frame: a triggered part
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(seconds))}.{millis:03d}Z_{frame}"


def heatmap_overlay(frame: np.ndarray, amap: np.ndarray) -> np.ndarray:
    """The frame (as BGR) with the min-max stretched, JET-coloured anomaly map blended on top."""
    amap = np.asarray(amap, dtype=np.float32)
    while amap.ndim > 2 and amap.shape[0] == 1:
        amap = amap[0]
    if amap.ndim != 2:
        raise PermanentError(f"anomaly map must be HxW, got shape {amap.shape}")
    finite = amap[np.isfinite(amap)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return overlay(_bgr(frame), amap, low, high)  # each NOK image on its own map's range


def _bgr(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8 or not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3))):
        raise PermanentError(f"frame must be uint8 HxW or HxWx3 (BGR), got {frame.dtype} {frame.shape}")
    return to_bgr(frame)


class NokDirSink(Sink):
    """Writes NOK frames, heatmap overlays and records into a size-capped folder."""

    def __init__(self, folder: Path, max_mb: float = DEFAULT_MAX_MB, options: SinkOptions | None = None, uri: str | None = None) -> None:
        super().__init__(uri or f"nokdir://{folder}?max_mb={max_mb:g}", options)
        self.folder = folder
        self.max_bytes = int(max_mb * 1e6)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".edgefreq-write-test"
            probe.write_bytes(b"")
            probe.unlink()
            for stale in (p for p in folder.iterdir() if _TEMPORARY.match(p.name)):  # left by a crash or a full disk
                stale.unlink()
            existing = sorted(p for p in folder.iterdir() if _NAME.match(p.name))
            sizes = [(p, p.stat().st_size) for p in existing]
        except OSError as exc:
            raise uri_error("sink", self.name, f"cannot write into {folder} ({exc.strerror}); check the path and its permissions") from None
        self._records: OrderedDict[str, int] = OrderedDict()  # stem -> bytes, oldest first
        for path, size in sizes:
            stem = _NAME.match(path.name).group(1)
            self._records[stem] = self._records.get(stem, 0) + size
        self._bytes = sum(self._records.values())

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> NokDirSink:
        opts = uri.options(("max_mb",))
        max_mb = float(uri.number("max_mb", opts.get("max_mb", str(DEFAULT_MAX_MB)), float, 1e-6, 1e9))
        return cls(uri.path("nokdir:///var/nok or nokdir://nok"), max_mb, options, uri.text)

    def _accept(self, decision: Decision, frame: np.ndarray | None, amap: np.ndarray | None) -> Item | None:
        if decision.verdict != "NOK":
            return None
        return Item(
            decision,
            None if frame is None else np.array(frame, copy=True),
            None if amap is None else np.array(amap, copy=True),
        )

    def _deliver(self, item: Item) -> None:
        stem = record_stem(item.decision)
        files = {f"{stem}.json": (item.decision.to_json() + "\n").encode()}
        if item.frame is not None:
            files[f"{stem}.png"] = _png(_bgr(item.frame))
            if item.amap is not None:
                files[f"{stem}_heatmap.png"] = _png(heatmap_overlay(item.frame, item.amap))
        self._write(stem, files)

    def _write(self, stem: str, files: dict[str, bytes]) -> None:
        """Write a record's files atomically; on a full disk remove the oldest records to make room."""
        for name, data in files.items():
            temporary = self.folder / f".{name}.tmp"
            while True:
                try:
                    temporary.write_bytes(data)
                    os.replace(temporary, self.folder / name)
                    break
                except OSError as exc:
                    temporary.unlink(missing_ok=True)
                    if exc.errno != errno.ENOSPC or not any(s != stem for s in self._records):
                        raise
                    self._remove_oldest(keep=stem)
        size = sum(len(data) for data in files.values())
        self._bytes += size - self._records.pop(stem, 0)
        self._records[stem] = size
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        while self._bytes > self.max_bytes and len(self._records) > 1:
            self._remove_oldest()

    def _remove_oldest(self, keep: str | None = None) -> None:
        stem = next(s for s in self._records if s != keep)
        size = self._records.pop(stem)
        for suffix in (".json", ".png", "_heatmap.png"):
            (self.folder / f"{stem}{suffix}").unlink(missing_ok=True)
        self._bytes -= size

    @property
    def abort_grace_s(self) -> float:
        """Encoding and writing one record's PNGs: well under a second even at 4K."""
        return 30.0

    def _release(self) -> None:
        """The records of NOK decisions still queued (close ran out of time), written without their images."""
        if self._thread.is_alive():
            return
        with self._cond:
            left = list(self._queue)
        written = 0
        for item in left:
            stem = record_stem(item.decision)
            try:
                self._write(stem, {f"{stem}.json": (item.decision.to_json() + "\n").encode()})
                written += 1
            except OSError as exc:
                log.warning("sink %s: could not write the record of frame %d (%s)", self.name, item.decision.frame_id, exc)
        if written:
            log.warning("sink %s: wrote the records of %d queued NOK decisions without their images (no time left)", self.name, written)


def _png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise PermanentError(f"OpenCV could not encode a {image.shape} image as PNG")
    return buffer.tobytes()
