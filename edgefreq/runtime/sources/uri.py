"""One URI grammar for every input (after jetson-utils videoSource).

    0, 1, ... or camera://0        camera by index (OpenCV, V4L2 on Linux)
    v4l2:///dev/video0             a V4L2 device node
    csi://0                        Jetson CSI camera (GStreamer nvarguscamerasrc)
    rtsp://host:554/path           network stream (OpenCV FFMPEG), also rtsps://
    genicam://[DEVICE-ID][?...]    GigE Vision / USB3 Vision camera through Aravis (see genicam.py)
    file:///path or a plain path   video file, image file, or folder of images
    synthetic://?seed=0&defect_rate=0.1&size=128x128
                                   the synthetic inspection line (size is WIDTHxHEIGHT)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from edgefreq.errors import UserError

from .base import Source
from .camera import open_camera, open_csi, open_stream, open_v4l2
from .files import IMAGE_EXTENSIONS, ImageFileSource, ImageFolderSource, VideoFileSource
from .genicam import open_genicam
from .options import SourceOptions
from .synthetic import SyntheticLine, SyntheticSource

SCHEMES = ("camera", "v4l2", "csi", "rtsp", "rtsps", "genicam", "file", "synthetic")
SYNTHETIC_KEYS = ("seed", "defect_rate", "size")
SYNTHETIC_DEFAULT_SIZE = (128, 128)  # height, width


def open_source(uri: str, options: SourceOptions | None = None) -> Source:
    """Open the source named by `uri`; a UserError in one line when it cannot be opened."""
    options = SourceOptions() if options is None else options
    uri = uri.strip()
    if not uri:
        raise UserError("empty source URI (try a file path, a folder, 0 for the first camera, or synthetic://)")
    if uri.isdigit():
        return open_camera(uri, int(uri), options)
    if "://" not in uri:
        return open_path(uri, Path(uri), options)
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme == "camera":
        return open_camera(uri, _number(uri, rest, "camera index"), options)
    if scheme == "v4l2":
        return open_v4l2(uri, rest, options)
    if scheme == "csi":
        return open_csi(uri, _number(uri, rest, "sensor id"), options)
    if scheme in ("rtsp", "rtsps"):
        return open_stream(uri, options)
    if scheme == "genicam":
        return open_genicam(uri, rest, options)
    if scheme == "file":
        return open_path(uri, Path(rest), options)
    if scheme == "synthetic":
        return SyntheticSource(uri, synthetic_line(uri, rest, options))
    raise UserError(f"{uri}: unknown source scheme {scheme!r} (known: {', '.join(s + '://' for s in SCHEMES)}, a path, or a camera index)")


def _number(uri: str, text: str, what: str) -> int:
    if not text.isdigit():
        raise UserError(f"{uri}: expected a {what} (0, 1, ...) after '://', got {text!r}")
    return int(text)


def open_path(uri: str, path: Path, options: SourceOptions) -> Source:
    """A folder of images, an image file, or a video file."""
    if not str(path):
        raise UserError(f"{uri}: no path given")
    if path.is_dir():
        return ImageFolderSource(uri, path, options.loop)
    if not path.exists():
        raise UserError(f"{uri}: no such file or folder {path}")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageFileSource(uri, path, options.loop)
    return VideoFileSource(uri, path, options.loop)


def synthetic_line(uri: str, rest: str, options: SourceOptions) -> SyntheticLine:
    """The SyntheticLine a synthetic:// URI names; unknown or malformed query keys are UserErrors."""
    where, _, query = rest.partition("?")
    if where.strip("/"):
        raise UserError(f"{uri}: write options as a query, e.g. synthetic://?seed=0&defect_rate=0.1&size=128x128")
    values = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(values) - set(SYNTHETIC_KEYS))
    if unknown:
        raise UserError(f"{uri}: unknown option {unknown[0]!r} (known: {', '.join(SYNTHETIC_KEYS)})")
    size = (options.height, options.width) if options.width else SYNTHETIC_DEFAULT_SIZE
    try:
        seed = int(values.get("seed", 0))
        defect_rate = float(values.get("defect_rate", 0.1))
        if "size" in values:
            width, height = (int(v) for v in values["size"].lower().split("x"))
            size = (height, width)
    except ValueError:
        raise UserError(f"{uri}: seed must be an integer, defect_rate a number, size WIDTHxHEIGHT (e.g. 128x128)") from None
    return SyntheticLine(size, seed, defect_rate)
