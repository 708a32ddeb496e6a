"""Live sources through OpenCV VideoCapture: USB/V4L2 cameras, Jetson CSI cameras, RTSP streams.

    0, 1, ... or camera://0       camera by index (V4L2 on Linux)
    v4l2:///dev/video0            a V4L2 device node
    csi://0                       Jetson CSI camera (GStreamer nvarguscamerasrc)
    rtsp[s]://[user:pw@]host[:port]/path[?query]   network stream (FFMPEG), passed on whole
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from edgefreq.runtime.uri import Uri, redact, uri_error

from .base import Source
from .options import SourceOptions

CSI_DEFAULT = (1280, 720, 30.0)  # width, height, fps when the options ask for the camera default


class CameraSource(Source):
    """A live cv2.VideoCapture; read() gives None when the driver delivers no frame."""

    is_live = True

    def __init__(
        self,
        uri: str,
        target: int | str,
        api: int,
        failure: str,
        params: tuple[int, ...] = (),
        settings: tuple[tuple[int, float], ...] = (),
    ) -> None:
        super().__init__(uri)
        self._target = target
        self._api = api
        self._failure = failure
        self._params = list(params)
        self._settings = settings
        self._cap: cv2.VideoCapture | None = None
        self._open()

    def _open(self) -> None:
        cap = cv2.VideoCapture(self._target, self._api, self._params)
        if not cap.isOpened():
            cap.release()
            raise uri_error("source", self.uri, self._failure)
        for prop, value in self._settings:
            cap.set(prop, value)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, image = self._cap.read()
        return image if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def reopen(self) -> None:
        self.close()
        self._open()


def _settings(options: SourceOptions) -> tuple[tuple[int, float], ...]:
    out: list[tuple[int, float]] = []
    if options.width:
        out += [(cv2.CAP_PROP_FRAME_WIDTH, options.width), (cv2.CAP_PROP_FRAME_HEIGHT, options.height)]
    if options.fps:
        out.append((cv2.CAP_PROP_FPS, options.fps))
    return tuple(out)


def _index(uri: Uri, what: str) -> int:
    uri.options(())
    if not uri.location.isdigit():
        raise uri.error(f"expected a {what} (0, 1, ...) after '://', got {uri.location!r}")
    return int(uri.location)


def open_camera(uri: Uri, options: SourceOptions) -> CameraSource:
    """Camera N (V4L2 on Linux, the platform default elsewhere)."""
    index = _index(uri, "camera index")
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    failure = f"cannot open camera {index} (not connected, in use by another program, or no permission; list cameras with `ls /dev/video*`)"
    return CameraSource(uri.text, index, api, failure, settings=_settings(options))


def open_v4l2(uri: Uri, options: SourceOptions) -> CameraSource:
    """A V4L2 device node such as /dev/video0."""
    uri.options(())
    device = uri.location
    if not device:
        raise uri.error("no device path; write it as v4l2:///dev/video0")
    if not Path(device).exists():
        raise uri.error(f"no such device {device} (is the camera plugged in? list cameras with `ls /dev/video*`)")
    failure = f"cannot open {device} as a V4L2 camera (in use by another program, no permission, or not a capture device)"
    return CameraSource(uri.text, device, cv2.CAP_V4L2, failure, settings=_settings(options))


def csi_pipeline(sensor_id: int, width: int, height: int, fps: float) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), delivering BGR to OpenCV."""
    rate = Fraction(fps).limit_denominator(1001)
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={rate.numerator}/{rate.denominator}, format=NV12 ! "
        "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def open_csi(uri: Uri, options: SourceOptions) -> CameraSource:
    """A Jetson CSI camera through GStreamer; needs an OpenCV built with GStreamer (JetPack's)."""
    sensor_id = _index(uri, "sensor id")
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise uri.error(
            f"GStreamer/Jetson camera not available: this OpenCV ({cv2.__version__}) is built without "
            "GStreamer; CSI cameras need a Jetson with JetPack's OpenCV (or an OpenCV built with GStreamer)"
        )
    width, height = (options.width, options.height) if options.width else CSI_DEFAULT[:2]
    fps = options.fps or CSI_DEFAULT[2]
    failure = (
        f"cannot open the Jetson CSI camera sensor-id={sensor_id} through GStreamer nvarguscamerasrc "
        "(is the sensor connected, does it support the requested mode, is nvargus-daemon running?)"
    )
    return CameraSource(uri.text, csi_pipeline(sensor_id, width, height, fps), cv2.CAP_GSTREAMER, failure)


def open_stream(uri: Uri, options: SourceOptions) -> CameraSource:
    """A network stream (rtsp://, rtsps://) through FFMPEG, with open and read timeouts of `timeout` s."""
    ms = int(options.timeout * 1000)
    params = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms)
    failure = f"cannot open the stream within {options.timeout:g} s (server down, wrong address or path, or wrong credentials?)"
    return CameraSource(redact(uri.text), uri.text, cv2.CAP_FFMPEG, failure, params=params)
