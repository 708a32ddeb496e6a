"""systemd's notify protocol (sd_notify(3)): READY, STATUS, STOPPING and watchdog pings.

The protocol is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named by $NOTIFY_SOCKET
(a path, or `@name` for the abstract namespace); systemd documents it as stable and meant to be
spoken directly, so this needs neither libsystemd nor a package. Without $NOTIFY_SOCKET (not
started by systemd with Type=notify) every call does nothing.

The watchdog ($WATCHDOG_USEC, for this process when $WATCHDOG_PID is unset or ours) is fed from
the line: the loop pings after a decision (`beat`, at most every third of the interval), and while
the line waits for a frame with nothing in flight (a triggered camera between parts) an idle thread
pings for it. A line stuck on a frame (an engine that hangs, a sink call that never returns) stops
both, and systemd restarts the service (Restart=on-failure).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("edgefreq")


class Notifier:
    """Sends sd_notify messages to $NOTIFY_SOCKET; a no-op when it is not set."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and ours and self.address else None

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        """One datagram of `lines`; False (logged once) when systemd's socket cannot be reached."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as exc:
            log.warning("systemd notify: cannot send to %s (%s); going on without it", self.address.replace("\0", "@"), exc)
            self._socket.close()
            self._socket = None
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class Watchdog:
    """Feeds systemd's watchdog from the line (module docstring).

    `beat()` runs on the loop's thread after each decision; `idle()` (called by the idle thread)
    says whether the line is waiting with nothing in flight; `status()` gives the STATUS= line.
    """

    def __init__(self, notifier: Notifier, idle: Callable[[], bool], status: Callable[[], str]) -> None:
        self.notifier = notifier
        self.interval = notifier.watchdog_s / 3 if notifier.watchdog_s else None
        self._idle, self._status = idle, status
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgefreq-watchdog", daemon=True)

    def start(self) -> Watchdog:
        if self.notifier.enabled:
            self._thread.start()
        return self

    def beat(self) -> None:
        """A decision was made: ping if a third of the watchdog interval has passed since the last ping."""
        if self.interval is not None and time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            self.notifier.send("WATCHDOG=1")

    def _run(self) -> None:
        period = self.interval if self.interval is not None else 5.0
        while not self._stop.wait(period):
            lines = [f"STATUS={self._status()}"]
            if self.interval is not None and time.monotonic() - self._last >= self.interval and self._idle():
                self._last = time.monotonic()
                lines.append("WATCHDOG=1")
            self.notifier.send(*lines)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
