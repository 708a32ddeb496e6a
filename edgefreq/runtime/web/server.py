"""The web side's thread: an aiohttp server on its own event loop, bound before the engine loads.

Binding happens in `start()` (a busy port or a bad address is a UserError there, before the line
starts). The server thread and the image/feedback worker run at a lower CPU priority (nice +10)
than the line, so on a loaded machine the kernel gives the line its cores first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from edgefreq.errors import UserError

log = logging.getLogger("edgefreq")
NICE = 10


def lower_priority() -> None:
    """nice +10 for the calling thread (Linux sets niceness per thread); ignored where not possible."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError):
        pass


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UserError("TLS needs both --http-cert and --http-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"--http-cert {cert} / --http-key {key}: cannot load them ({exc})") from None
    return context


class WebServer:
    """Serves `make_app(executor)` on host:port in a thread; `close()` stops it."""

    def __init__(self, make_app, host: str, port: int, ssl_context: ssl.SSLContext | None = None, tick=None) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="edgefreq-http-work", initializer=lower_priority)
        self.app: web.Application = make_app(self.executor)
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.tick = tick  # called every second on the server's loop (sink health sampling)
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self._ticker_task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._serve, name="edgefreq-http", daemon=True)

    def start(self) -> WebServer:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        except OSError as exc:
            self.close()
            raise UserError(f"--http {self.host}:{self.port}: cannot listen there ({exc.strerror or exc})") from None
        return self

    def _serve(self) -> None:
        lower_priority()
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=5.0, shutdown_timeout=1.0, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl_context, backlog=64)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.port = port
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
        if self.tick is not None:
            self._ticker_task = self.loop.create_task(self._ticker())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.tick()
            except Exception as exc:  # never the end of the server
                log.warning("http: status sampling failed: %s", exc)

    async def _stop(self) -> None:
        if self._ticker_task is not None:
            self._ticker_task.cancel()
        await self.runner.cleanup()

    def close(self) -> None:
        if self._thread.is_alive():
            if self.runner is not None:
                try:
                    asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(5)
                except Exception as exc:  # a server that cannot stop cleanly must not break the line's shutdown
                    log.warning("http: error while stopping: %s", exc)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        self.executor.shutdown(wait=True, cancel_futures=True)
        if not self._thread.is_alive():
            self.loop.close()
