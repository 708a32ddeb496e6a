"""display://: an output like any other; no display here is one clear line; the window is faked."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest

from edgefreq.errors import UserError
from edgefreq.runtime.display import compose
from edgefreq.runtime.record import Inspection
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sinks import display as display_sink


@pytest.mark.parametrize("why", ["no DISPLAY", "headless OpenCV"])
def test_no_display_is_one_line_before_the_line_starts(monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if why == "no DISPLAY":  # an OpenCV with a GUI, on a machine without a display
        monkeypatch.setattr(display_sink.cv2, "getBuildInformation", lambda: "  GUI:                           GTK3\n")
    else:
        monkeypatch.setattr(display_sink.cv2, "getBuildInformation", lambda: "  GUI:                           NONE\n")
    with pytest.raises(UserError) as info:
        open_sink("display://")
    message = str(info.value)
    assert "\n" not in message and message.startswith("sink 'display://': needs ")
    assert ("DISPLAY" in message) if why == "no DISPLAY" else ("opencv-python" in message)


class Window:
    """cv2's HighGUI calls, recorded; `keys` are what waitKey answers, in turn."""

    def __init__(self, keys: list[int]) -> None:
        self.keys, self.shown, self.calls, self.threads = list(keys), [], [], set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cv2 = display_sink.cv2
        monkeypatch.setattr(display_sink, "missing_display", lambda: None)
        monkeypatch.setattr(cv2, "namedWindow", lambda name, flags=0: self._call("namedWindow"))
        monkeypatch.setattr(cv2, "imshow", lambda name, image: (self._call("imshow"), self.shown.append(image)))
        monkeypatch.setattr(cv2, "waitKey", lambda ms: (self._call("waitKey"), self.keys.pop(0) if self.keys else -1)[1])
        monkeypatch.setattr(cv2, "destroyWindow", lambda name: self._call("destroyWindow"))

    def _call(self, name: str) -> None:
        self.calls.append(name)
        self.threads.add(threading.current_thread().name)


def test_display_shows_every_decision_with_its_frame(monkeypatch: pytest.MonkeyPatch, make_decision) -> None:
    window = Window(keys=[])
    window.install(monkeypatch)
    for uri in ("display://", "display://0"):
        sink = open_sink(uri)
        frame = np.full((48, 64, 3), 120, np.uint8)
        sink.submit(make_decision(0, "OK"), frame, np.zeros((48, 64), np.float32))
        sink.submit(make_decision(1, "NOK"), frame, np.full((48, 64), 1.0, np.float32))
        sink.submit(make_decision(2, "NOK", reason="no frame within 2 s of the trigger"))  # no image: a placeholder
        frame[:] = 0  # the caller may reuse its buffer: the sink kept its own copy
        assert sink.close(timeout=5)["sent"] == 3
    assert window.calls.count("namedWindow") == 2 and window.calls.count("destroyWindow") == 2
    assert window.threads == {"sink display://", "sink display://0"}  # made, drawn and closed on the sink's thread
    ok, nok, missing = window.shown[:3]
    d = make_decision(1, "NOK")
    expected = compose(Inspection(d, None, np.full((48, 64), 1.0, np.float32), np.full((48, 64, 3), 120, np.uint8)), 5 * d.threshold)
    assert np.array_equal(nok, expected)  # the picture of the frame as submitted, at the decision's threshold scale
    assert ok.shape == (48, 64, 3) and missing.shape == (240, 320, 3)


def test_q_in_the_window_stops_the_line_like_ctrl_c(monkeypatch: pytest.MonkeyPatch, make_decision) -> None:
    Window(keys=[-1, ord("q")]).install(monkeypatch)
    raised = []
    monkeypatch.setattr(display_sink.signal, "raise_signal", raised.append)
    sink = open_sink("display://")
    for i in range(3):
        sink.submit(make_decision(i), np.zeros((8, 8), np.uint8))
    sink.close(timeout=5)
    assert raised == [signal.SIGINT]
