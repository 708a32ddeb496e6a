"""The line as a service: the operator's web view (`--http`) and systemd's notify protocol.

`edgefreq run` opens a LineService before the engine loads (so /healthz answers and a bad
--http address fails at once), tells it when the engine is loaded and the capture runs
(`ready`: READY=1 to systemd, /readyz can turn ready), passes `observer()` to the loop as its
`on_inspection` callback, and closes it after the summary (STOPPING=1, the server stops).
Without --http and without $NOTIFY_SOCKET it does nothing and costs the loop nothing.

Access (DESIGN.md decision 13): viewing is open to loopback only. --http on any other address
needs --http-public and EDGEFREQ_HTTP_TOKEN (viewing from elsewhere then needs the token);
operator actions (feedback) always need the token. TLS: --http-cert/--http-key, or a reverse
proxy on the same machine (README).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from edgefreq.errors import UserError
from edgefreq.runtime.systemd import Notifier, Watchdog

log = logging.getLogger("edgefreq")
TOKEN_ENV = "EDGEFREQ_HTTP_TOKEN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("operator view and service")
    g.add_argument("--http", metavar="HOST:PORT", help="serve the web page, /metrics, /healthz, /readyz, /api/status (e.g. 127.0.0.1:8080)")
    g.add_argument("--http-public", action="store_true",
                   help=f"allow --http on an address other than loopback (needs {TOKEN_ENV}; viewing from elsewhere then needs it)")
    g.add_argument("--http-cert", type=Path, metavar="FILE", help="serve HTTPS with this certificate (PEM; with --http-key)")
    g.add_argument("--http-key", type=Path, metavar="FILE", help="the certificate's private key (PEM)")
    g.add_argument("--feedback", type=Path, metavar="DIR",
                   help=f"operator feedback from the gallery goes here, in the MVTec layout (needs {TOKEN_ENV})")
    g.add_argument("--gallery", type=int, default=24, metavar="N", help="recent NOK parts the page keeps (default 24)")
    g.add_argument("--ready-within", type=float, default=10.0, metavar="S",
                   help="/readyz: ready only if a frame was decided within S seconds and no sink failed within them (default 10)")


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or PORT (loopback) -> (host, port)."""
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    try:
        parts = urlsplit(f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise UserError(f"--http {text}: give HOST:PORT, e.g. 127.0.0.1:8080 ([::1]:8080 for IPv6)")
    return host, port


def loopback_only(host: str) -> bool:
    """True when every address `host` names is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UserError(f"--http {host}: unknown host ({exc.strerror})") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


class LineService:
    """See the module docstring."""

    def __init__(self, args: argparse.Namespace, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.notifier = Notifier(env)
        self.token = env.get(TOKEN_ENV) or None
        self.server = None
        self.status = None
        self.watchdog: Watchdog | None = None
        self.triggers = None  # --trigger http: POST /api/trigger fires these
        http = getattr(args, "http", None)
        self.feedback_dir = getattr(args, "feedback", None)
        if self.feedback_dir is not None and not http:
            raise UserError("--feedback needs --http (the feedback buttons are on the web page)")
        if not http and not self.notifier.enabled:
            return
        from edgefreq.runtime.web.state import LineState
        from edgefreq.runtime.web.status import LineStatus

        if args.gallery < 1 or args.ready_within <= 0:
            raise UserError("--gallery must be at least 1 and --ready-within above 0")
        self.state = LineState(gallery=args.gallery)
        self.status = LineStatus(self.state, ready_within_s=args.ready_within)
        if http:
            self.server = self._serve(args, http)

    def _serve(self, args: argparse.Namespace, http: str):
        host, port = parse_address(http)
        if not loopback_only(host):
            if not args.http_public:
                raise UserError(f"--http {http} is not a loopback address: the page would be open to the network; "
                                f"add --http-public (with {TOKEN_ENV} set) or bind 127.0.0.1 behind a reverse proxy")
            if not self.token:
                raise UserError(f"--http-public needs {TOKEN_ENV} (viewing and feedback from other machines need the token)")
        if self.feedback_dir is not None and not self.token:
            raise UserError(f"--feedback needs {TOKEN_ENV} set: operator actions need a token")
        try:
            from edgefreq.runtime.web.app import make_app
            from edgefreq.runtime.web.feedback import check_folder
            from edgefreq.runtime.web.server import WebServer, tls_context
        except ModuleNotFoundError as exc:
            raise UserError(f"--http needs {exc.name}, which is not installed: pip install 'edgefreq[web]'") from None
        feedback_dir = check_folder(self.feedback_dir) if self.feedback_dir is not None else None
        ssl_context = tls_context(args.http_cert, args.http_key)
        server = WebServer(lambda executor: make_app(self.status, executor, self.token, feedback_dir, parts=lambda: self.triggers),
                           host, port, ssl_context, tick=self.status.sink_stats).start()
        log.info("http: the operator view is at %s/ (metrics %s/metrics)%s", server.url, server.url,
                 "" if self.token else f"; feedback off ({TOKEN_ENV} not set)")
        return server

    def take_triggers(self, triggers) -> None:
        """--trigger http: part triggers come as POST /api/trigger (operator token) on --http."""
        if self.server is None:
            raise UserError("--trigger http needs --http HOST:PORT: the part triggers are POSTed to /api/trigger there")
        if not self.token:
            raise UserError(f"--trigger http needs {TOKEN_ENV} set: a part trigger is an operator action and needs the token")
        self.triggers = triggers

    def ready(self, inspector, capture, sinks: list, source: str) -> None:
        """The engine is loaded and the capture runs: READY=1, the watchdog starts."""
        if self.status is None:
            return
        self.status.attach(inspector, capture, sinks, source)
        if self.notifier.enabled:
            self.notifier.send("READY=1", f"STATUS=inspecting {source} with {inspector.engine}")
            self.watchdog = Watchdog(self.notifier, self._idle, self._status_line).start()

    def _idle(self) -> bool:
        """The line waits for a frame with none in flight (the idle thread may feed the watchdog)."""
        stats = self.status.capture.stats()
        return stats.buffered == 0 and stats.delivered <= self.state.frames

    def _status_line(self) -> str:
        s = self.state.snapshot()
        dropped = self.status.capture.stats().dropped
        shown = f" (yield {100 * s.yield_:.1f} %)" if s.yield_ is not None else ""
        return f"{s.frames} frames, {s.nok} NOK{shown}, {dropped} dropped"

    def observer(self, then: Callable | None) -> Callable | None:
        """The loop's on_inspection: record the decision, feed the watchdog, then call `then`."""
        if self.status is None:
            return then
        observe = self.state.observe

        def on_inspection(inspection) -> None:
            observe(inspection)
            if self.watchdog is not None:
                self.watchdog.beat()
            if then is not None:
                then(inspection)

        return on_inspection

    def close(self) -> None:
        """After the line: STOPPING=1, the watchdog and the server stop."""
        if self.status is not None:
            self.status.detach()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.notifier.enabled:
            self.notifier.send("STOPPING=1")
        self.notifier.close()
        if self.server is not None:
            self.server.close()
