"""Which scheme opens which source: the input side of the one URI grammar (edgefreq/runtime/uri.py).

    0, 1, ... or camera://0        camera by index (OpenCV, V4L2 on Linux)        camera.py
    v4l2:///dev/video0             a V4L2 device node                             camera.py
    csi://0                        Jetson CSI camera (GStreamer nvarguscamerasrc) camera.py
    rtsp://host:554/path           network stream (OpenCV FFMPEG), also rtsps://  camera.py
    genicam://[DEVICE-ID][?...]    GigE Vision / USB3 Vision camera (Aravis)      genicam.py
    file:///path or a plain path   video file, image file, or folder of images   files.py
    synthetic://?seed=0&defect_rate=0.1&size=128x128
                                   the synthetic inspection line                  synthetic.py
"""

from __future__ import annotations

from urllib.parse import SplitResult

from edgefreq.runtime.uri import Schemes

from .base import Source
from .options import SourceOptions

GRAMMAR = (
    "N or camera://N, v4l2:///dev/videoN, csi://N, rtsp[s]://HOST[:PORT]/PATH, genicam://[DEVICE-ID][?...], "
    "file://PATH (or a video, image or folder path), synthetic://[?seed=S&defect_rate=R&size=WxH]"
)


def _shorthand(text: str) -> SplitResult:
    """A camera index is camera://N; anything else without '://' is a path, taken as written."""
    if text.isdigit():
        return SplitResult("camera", text, "", "", "")
    return SplitResult("file", "", text, "", "")


SCHEMES = Schemes(
    kind="source",
    package=__package__,
    table={  # one line a module
        "camera": "camera:open_camera", "v4l2": "camera:open_v4l2", "csi": "camera:open_csi",
        "rtsp": "camera:open_stream", "rtsps": "camera:open_stream",
        "genicam": "genicam:open_genicam",
        "file": "files:open_path",
        "synthetic": "synthetic:open_synthetic",
    },
    usage=GRAMMAR,
    shorthand=_shorthand,
)


def open_source(uri: str, options: SourceOptions | None = None) -> Source:
    """Open the source named by `uri`; a one-line UserError when it cannot be opened."""
    return SCHEMES.open(uri, SourceOptions() if options is None else options)
