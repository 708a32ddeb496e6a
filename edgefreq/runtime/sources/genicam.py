"""GenICam cameras (GigE Vision, USB3 Vision) through Aravis 0.8 and PyGObject.

    genicam://                       the first camera Aravis finds
    genicam://DEVICE-ID              a device id from `edgefreq cameras` (Aravis also accepts the
                                     camera's serial number or, for GigE Vision, its IP address)
    genicam://DEVICE-ID?pixel_format=BayerRG8&exposure=2000&gain=auto&roi=0,0,1280,720&trigger=hardware

Query options (`GenICamSettings`): pixel_format (Mono8 -> gray; BayerRG8 / BayerGR8 / BayerGB8 /
BayerBG8 -> BGR; RGB8, BGR8; default: the camera's own format when it is one of these, else the
first of these it offers), exposure (microseconds or auto), gain (dB or auto), roi (X,Y,W,H: the
sensor region read out, not the model's --roi), trigger (free, software, hardware), trigger_source
(hardware only, default Line1), trigger_activation (hardware only: RisingEdge, FallingEdge, ...),
buffers (stream buffers, default 8). The options every source has: --resolution WxH sets the sensor
region's size at offset 0 (give roi= instead to place it), --fps the free-running frame rate,
--timeout the stall detection.

Stream health: a buffer the camera delivered incomplete (missing packets, timeout) and a frame that
never arrived (a gap in the camera's frame ids) are counted by `lost()`; the line adds them to the
records' `dropped` and shows them in the summary. A camera that stops sending (free-running), no
longer answers, or lost our control (it restarted) is reopened by Capture with backoff.

Triggered cameras: between triggers `read()` gives None and `waiting()` is True, so Capture never
takes a quiet line for a stall; every `timeout` seconds without a frame the camera is probed (a
vanished GigE camera takes Aravis up to ~2.5 s to give up on). With trigger=software,
`software_trigger()` (any thread) exposes exactly one frame: a PLC trigger calls it when the part
is under the camera, so the inspected frame is exposed after the part arrived.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgefreq.errors import UserError
from edgefreq.geometry import parse_roi
from edgefreq.runtime.uri import Uri, uri_error

from .base import Source
from .options import SourceOptions

log = logging.getLogger("edgefreq")

INSTALL = (
    "GenICam cameras need Aravis 0.8 with PyGObject: apt-get install gir1.2-aravis-0.8 "
    "(plus libgirepository1.0-dev libcairo2-dev pkg-config to build PyGObject), then pip install 'edgefreq[genicam]'"
)
KEYS = ("pixel_format", "exposure", "gain", "roi", "trigger", "trigger_source", "trigger_activation", "buffers")
TRIGGERS = ("free", "software", "hardware")
# GenICam pixel format -> (bytes per pixel, OpenCV conversion to gray/BGR or None when already so).
# OpenCV's Bayer codes named after the 2x2 tile (RGGB = GenICam BayerRG) say what they mean.
PIXEL_FORMATS: dict[str, tuple[int, int | None]] = {
    "Mono8": (1, None),
    "BayerRG8": (1, cv2.COLOR_BayerRGGB2BGR),
    "BayerGR8": (1, cv2.COLOR_BayerGRBG2BGR),
    "BayerGB8": (1, cv2.COLOR_BayerGBRG2BGR),
    "BayerBG8": (1, cv2.COLOR_BayerBGGR2BGR),
    "RGB8": (3, cv2.COLOR_RGB2BGR),
    "BGR8": (3, None),
    "RGB8Packed": (3, cv2.COLOR_RGB2BGR),  # the names before SFNC 2.0
    "BGR8Packed": (3, None),
}
MAX_POP_S = 1.0  # longest single wait for a buffer: Capture.stop() waits 2 s for the thread
RMEM_MAX = Path("/proc/sys/net/core/rmem_max")


def aravis():
    """The Aravis module through PyGObject, or a UserError naming what to install."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError):
        raise UserError(INSTALL) from None
    return Aravis


def glib_error() -> type[Exception]:
    from gi.repository import GLib

    return GLib.Error


@dataclass(frozen=True)
class GenICamSettings:
    """What a genicam:// query asks of the camera (None = leave the camera's own setting)."""

    pixel_format: str | None = None
    exposure: float | str | None = None  # microseconds, or "auto"
    gain: float | str | None = None  # dB, or "auto"
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height on the sensor
    trigger: str = "free"
    trigger_source: str | None = None
    trigger_activation: str | None = None
    buffers: int = 8


def parse_genicam(uri: Uri) -> tuple[str | None, GenICamSettings]:
    """(device id or None for the first camera, settings) from a genicam:// URI."""
    device = uri.location.strip("/") or None
    values = uri.options(KEYS)
    fmt = values.get("pixel_format")
    if fmt is not None and fmt not in PIXEL_FORMATS:
        raise uri.error(f"pixel_format {fmt!r} is not supported (choose from {', '.join(PIXEL_FORMATS)})")
    trigger = values.get("trigger", "free")
    if trigger not in TRIGGERS:
        raise uri.error(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    for key in ("trigger_source", "trigger_activation"):
        if key in values and trigger != "hardware":
            raise uri.error(f"{key} is for trigger=hardware (this URI asks for trigger={trigger})")
    try:
        roi = parse_roi(values["roi"], "roi") if "roi" in values else None
    except UserError as exc:
        raise uri.error(str(exc)) from None
    buffers = uri.number("buffers", values.get("buffers", "8"), int, 2, 1024)
    return device, GenICamSettings(
        pixel_format=fmt,
        exposure=_level(uri, "exposure", values.get("exposure")),
        gain=_level(uri, "gain", values.get("gain")),
        roi=roi,
        trigger=trigger,
        trigger_source=values.get("trigger_source", "Line1" if trigger == "hardware" else None),
        trigger_activation=values.get("trigger_activation"),
        buffers=buffers,
    )


def _level(uri: Uri, key: str, text: str | None) -> float | str | None:
    if text is None or text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise uri.error(f"{key} must be a number or auto, got {text!r}") from None
    if value < 0:
        raise uri.error(f"{key} must be >= 0, got {text!r}")
    return value


def to_image(data: bytes, width: int, height: int, padding: int, pixel_format: str) -> np.ndarray:
    """A raw GenICam image (rows of width * bytes-per-pixel + padding bytes) as gray or BGR uint8."""
    depth, code = PIXEL_FORMATS[pixel_format]
    stride = width * depth + padding
    rows = np.frombuffer(data, np.uint8, count=stride * height).reshape(height, stride)[:, : width * depth]
    image = rows.reshape(height, width, depth) if depth == 3 else rows
    return np.array(image) if code is None else cv2.cvtColor(image, code)


def list_cameras() -> list[dict[str, str]]:
    """Every GenICam device Aravis sees (GigE Vision discovery takes about a second)."""
    Aravis = aravis()
    Aravis.update_device_list()
    fields = ("id", "vendor", "model", "serial_nbr", "protocol", "address")
    return [
        {name: getattr(Aravis, f"get_device_{name}")(i) or "" for name in fields}
        for i in range(Aravis.get_n_devices())
    ]


class FrameGaps:
    """Frames a camera sent that never reached us, from the gaps in its frame ids (`missing`).

    A late frame (Aravis hands buffers out as they complete) fills the gap it had opened; GigE
    Vision 1.x block ids are 16-bit and wrap from 65535 to 1 (0 is invalid)."""

    def __init__(self) -> None:
        self.missing = 0
        self._last: int | None = None

    def restart(self) -> None:
        """The camera counts afresh (acquisition restarted)."""
        self._last = None

    def add(self, frame_id: int) -> None:
        if frame_id == 0:
            return
        if self._last is None:
            self._last = frame_id
            return
        step = frame_id - self._last
        if step < -0x8000 and self._last <= 0xFFFF:
            step += 0xFFFF
        if step < 0:
            self.missing = max(0, self.missing - 1)
        elif step > 0:
            self.missing += step - 1
            self._last = frame_id


class GenICamSource(Source):
    """A GenICam camera streaming through Aravis; see the module docstring."""

    is_live = True

    def __init__(self, uri: str, device: str | None, settings: GenICamSettings, options: SourceOptions) -> None:
        if settings.trigger != "free" and options.fps:
            raise uri_error("source", uri, f"--fps is for a free-running camera; with trigger={settings.trigger} the trigger sets the rate")
        if settings.roi and options.width:
            raise uri_error("source", uri, "give the sensor region either as roi= or as --resolution, not both")
        super().__init__(uri)
        self.settings = settings
        self._device = device
        self._options = options
        self._aravis = aravis()
        self._error = glib_error()
        self._lock = threading.Lock()  # control-channel calls: the capture thread vs software_trigger()
        self._camera = None
        self._stream = None
        self._incomplete = 0
        self._gaps = FrameGaps()
        self._waiting = False
        self._gone = False
        self.last_timestamps = (0, 0)  # (camera clock, host arrival) of the last frame read, ns
        self._open()

    # ------------------------------------------------------------------ Source
    def read(self) -> np.ndarray | None:
        """The next complete frame, or None when none came within min(timeout, 1 s)."""
        if self._stream is None:
            return None
        if self._gone:
            raise RuntimeError("the camera stopped answering, or we lost its control (it restarted, or another program took it)")
        deadline = time.monotonic() + min(self._options.timeout, MAX_POP_S)
        arrived = False
        while (left := deadline - time.monotonic()) > 0:
            buffer = self._stream.timeout_pop_buffer(int(left * 1e6))
            if buffer is None:
                break
            arrived = True
            try:
                image = self._take(buffer)
            finally:
                self._stream.push_buffer(buffer)
            if image is not None:
                self._waiting = False
                self._quiet_since = time.monotonic()
                return image
        self._waiting = self.settings.trigger != "free" and not arrived
        if self._waiting and time.monotonic() - self._quiet_since >= self._options.timeout:
            self._probe()
            self._quiet_since = time.monotonic()
        return None

    def waiting(self) -> bool:
        return self._waiting

    def lost(self) -> int:
        return self._incomplete + self._gaps.missing

    def close(self) -> None:
        with self._lock:
            camera, self._camera, self._stream = self._camera, None, None
            if camera is None:
                return
            camera.get_device().disconnect(self._lost_handler)
            if not self._gone:
                try:
                    camera.stop_acquisition()
                except self._error:
                    pass  # the camera is gone; there is nothing left to stop

    def reopen(self) -> None:
        self.close()
        self._open()

    # ------------------------------------------------------------------ triggers
    def software_trigger(self) -> None:
        """Expose one frame now (trigger=software); safe from any thread, e.g. a PLC trigger handler.

        A UserError when the source is not in software-trigger mode, the camera is being reopened
        or does not answer (the part is then not imaged: its caller should count it NOK). A GigE
        camera that vanished holds this call for Aravis's command timeout (~2.5 s) the first time.
        """
        if self.settings.trigger != "software":
            raise uri_error("source", self.uri, f"software_trigger() needs trigger=software (this camera runs trigger={self.settings.trigger})")
        with self._lock:
            if self._camera is None or self._gone:
                raise uri_error("source", self.uri, "the camera is being reopened; the software trigger was not sent")
            try:
                self._camera.software_trigger()
            except self._error as exc:
                self._gone = True  # the capture thread's next read() reopens the camera
                raise uri_error("source", self.uri, f"the software trigger failed: {exc.message}") from None

    # ------------------------------------------------------------------ internals
    def _take(self, buffer) -> np.ndarray | None:
        """The image in a popped buffer, or None (counted) when the camera delivered it incomplete."""
        self._gaps.add(buffer.get_frame_id())
        if buffer.get_status() != self._aravis.BufferStatus.SUCCESS:
            self._incomplete += 1
            if self._incomplete == 1 or self._incomplete % 100 == 0:
                log.warning("%s: %d incomplete buffer(s) so far (last: %s)%s", self.uri, self._incomplete,
                            buffer.get_status().value_nick, self._rmem_hint)
            return None
        data = buffer.get_data()
        width, height = buffer.get_image_width(), buffer.get_image_height()
        padding = buffer.get_image_padding()[0]
        if buffer.get_image_pixel_format() != self._format_code or len(data) < (width * self._depth + padding) * height:
            self._incomplete += 1
            return None
        self.last_timestamps = (buffer.get_timestamp(), buffer.get_system_timestamp())
        return to_image(data, width, height, padding, self._format)

    def _probe(self) -> None:
        """A triggered camera has been quiet for `timeout` s: is it still there, still triggered?"""
        with self._lock:
            if self._gone:  # a software trigger found it gone while we waited for the lock
                raise RuntimeError("the camera does not answer")
            try:
                mode = self._camera.get_string("TriggerMode")
            except self._error as exc:
                self._gone = True
                raise RuntimeError(f"the camera does not answer: {exc.message}") from None
        if mode != "On":
            raise RuntimeError(f"the camera left trigger mode (TriggerMode={mode}): it restarted")

    def _open(self) -> None:
        with self._lock:
            try:
                camera = self._aravis.Camera.new(self._device)
            except self._error as exc:
                which = f"camera {self._device!r}" if self._device else "camera"
                raise uri_error("source", self.uri, f"no GenICam {which} found ({exc.message}); list them with `edgefreq cameras`") from None
            try:
                self._configure(camera)
                self.description = self._describe(camera)
                stream = self._start(camera)
            except self._error as exc:
                raise uri_error("source", self.uri, f"the camera refused a setting: {exc.message}") from None
            self._gone = False
            self._lost_handler = camera.get_device().connect("control-lost", self._on_control_lost)
            self._camera, self._stream = camera, stream
            log.info("%s: %s", self.uri, self.description)
            self._gaps.restart()
            self._waiting = False
            self._quiet_since = time.monotonic()

    def _on_control_lost(self, _device) -> None:  # Aravis's heartbeat thread
        self._gone = True

    def _configure(self, camera) -> None:
        s, o = self.settings, self._options
        self._format = self._pick_format(camera)
        camera.set_pixel_format_from_string(self._format)
        self._format_code = camera.get_pixel_format()
        self._depth = PIXEL_FORMATS[self._format][0]
        region = s.roi or ((0, 0, o.width, o.height) if o.width else None)
        if region:
            self._set_region(camera, region)
        for name, value in (("exposure", s.exposure), ("gain", s.gain)):
            if value is not None:
                self._set_level(camera, name, value)
        camera.set_acquisition_mode(self._aravis.AcquisitionMode.CONTINUOUS)
        if s.trigger == "free":
            camera.clear_triggers()  # a camera left triggered by another program runs free
            if o.fps:
                self._check_bounds(camera, "frame rate", o.fps, camera.get_frame_rate_bounds(), "fps")
                camera.set_frame_rate(o.fps)
            return
        if not camera.is_software_trigger_supported() and s.trigger == "software":
            raise uri_error("source", self.uri, "this camera has no software trigger (TriggerSoftware)")
        source = "Software" if s.trigger == "software" else s.trigger_source
        sources = camera.dup_available_trigger_sources()
        if source not in sources:
            raise uri_error("source", self.uri, f"trigger source {source!r} not offered by this camera (it has {', '.join(sources)})")
        camera.set_trigger(source)
        if s.trigger_activation:
            offered = camera.dup_available_enumerations_as_strings("TriggerActivation")
            if s.trigger_activation not in offered:
                raise uri_error("source", self.uri, f"trigger_activation {s.trigger_activation!r} not offered (choose from {', '.join(offered)})")
            camera.set_string("TriggerActivation", s.trigger_activation)

    def _describe(self, camera) -> str:
        """What the camera runs now, read back from it (logged at open)."""
        region = camera.get_region()
        text = (f"{camera.get_vendor_name()} {camera.get_model_name()} {camera.get_device_id()}: "
                f"{region.width}x{region.height} at ({region.x}, {region.y}) {camera.get_pixel_format_as_string()}, ")
        if self.settings.trigger == "free":
            text += f"free-running at {camera.get_frame_rate():g} fps"
        elif self.settings.trigger == "software":
            text += "software trigger"
        else:
            text += f"hardware trigger on {camera.get_string('TriggerSource')}"
            if camera.is_feature_available("TriggerActivation"):
                text += f" ({camera.get_string('TriggerActivation')})"
        if camera.is_exposure_time_available():
            text += f", exposure {camera.get_exposure_time():g} us"
        if camera.is_gain_available():
            text += f", gain {camera.get_gain():g} dB"
        return text

    def _pick_format(self, camera) -> str:
        offered = camera.dup_available_pixel_formats_as_strings()
        usable = [f for f in offered if f in PIXEL_FORMATS]
        wanted = self.settings.pixel_format
        if wanted is not None:
            if wanted not in offered:
                raise uri_error("source", self.uri, f"the camera does not offer pixel_format {wanted} (it has {', '.join(offered)})")
            return wanted
        current = camera.get_pixel_format_as_string()
        if current in PIXEL_FORMATS:
            return current
        if not usable:
            raise uri_error("source", self.uri, f"the camera offers no 8-bit format edgefreq reads ({', '.join(offered)}; "
                            f"supported: {', '.join(PIXEL_FORMATS)})")
        log.info("%s: camera format %s is not 8-bit gray/BGR; using %s", self.uri, current, usable[0])
        return usable[0]

    def _set_region(self, camera, region: tuple[int, int, int, int]) -> None:
        x, y, w, h = region
        sensor = camera.get_sensor_size()
        if x + w > sensor.width or y + h > sensor.height:
            raise uri_error("source", self.uri, f"sensor region {w}x{h} at ({x}, {y}) does not fit the {sensor.width}x{sensor.height} sensor")
        camera.set_region(x, y, w, h)
        got = tuple(camera.get_region())
        if got != region:
            raise uri_error("source", self.uri, f"the camera set the sensor region to {got} instead of {region} "
                            f"(width steps of {camera.get_width_increment()}, height steps of {camera.get_height_increment()})")

    def _set_level(self, camera, name: str, value: float | str) -> None:
        """Exposure (us) or gain (dB): a fixed value within the camera's bounds, or auto."""
        auto_ok, available = {
            "exposure": (camera.is_exposure_auto_available, camera.is_exposure_time_available),
            "gain": (camera.is_gain_auto_available, camera.is_gain_available),
        }[name]
        set_auto = camera.set_exposure_time_auto if name == "exposure" else camera.set_gain_auto
        if value == "auto":
            if not auto_ok():
                raise uri_error("source", self.uri, f"this camera has no automatic {name}")
            set_auto(self._aravis.Auto.CONTINUOUS)
            return
        if not available():
            raise uri_error("source", self.uri, f"this camera has no {name} control")
        if auto_ok():
            set_auto(self._aravis.Auto.OFF)
        if name == "exposure":
            self._check_bounds(camera, name, value, camera.get_exposure_time_bounds(), "us")
            camera.set_exposure_time(value)
        else:
            self._check_bounds(camera, name, value, camera.get_gain_bounds(), "dB")
            camera.set_gain(value)

    def _check_bounds(self, camera, name: str, value: float, bounds, unit: str) -> None:
        if not bounds.min <= value <= bounds.max:
            raise uri_error("source", self.uri, f"{name} {value:g} {unit} is outside this camera's range {bounds.min:g} to {bounds.max:g} {unit}")

    def _start(self, camera):
        """The stream with its buffers, acquisition started."""
        payload = camera.get_payload()
        self._rmem_hint = ""
        if camera.is_gv_device():
            if camera.get_device().get_device_address().get_address().get_is_loopback():
                # Aravis's packet socket (used when run as root) sees nothing on the loopback interface
                camera.gv_set_stream_options(self._aravis.GvStreamOption.PACKET_SOCKET_DISABLED)
            self._rmem_hint = _rmem_hint(payload)
        stream = camera.create_stream(None, None)
        if camera.is_gv_device():
            # the kernel's default UDP buffer (~200 kB) overflows on one burst of a 512x512 frame
            stream.set_property("socket-buffer-size", max(4 * payload, 2**21))
        for _ in range(self.settings.buffers):
            stream.push_buffer(self._aravis.Buffer.new_allocate(payload))
        camera.start_acquisition()
        return stream


def _rmem_hint(payload: int) -> str:
    """A hint for the incomplete-buffer warning when the kernel caps UDP buffers below two frames."""
    try:
        limit = int(RMEM_MAX.read_text())
    except (OSError, ValueError):
        return ""
    if limit >= 2 * payload:
        return ""
    return f"; net.core.rmem_max is {limit} bytes, under two frames ({2 * payload}): sysctl -w net.core.rmem_max={8 * payload}"


def open_genicam(uri: Uri, options: SourceOptions) -> GenICamSource:
    """genicam://[DEVICE-ID][?options] (see the module docstring)."""
    device, settings = parse_genicam(uri)
    return GenICamSource(uri.text, device, settings, options)
