"""An asyncio server on its own event loop in a daemon thread: what the Modbus and OPC UA sinks
serve from, so the line's threads never run (or wait on) a protocol library's event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class ServerThread:
    """Runs `start()` (a coroutine function that starts the server) on a fresh loop in a thread,
    then keeps the loop running. `started` is False when it raised (`error`) or took longer than
    `timeout` seconds; `run` executes a coroutine on the loop from any thread."""

    def __init__(self, name: str, start: Callable[[], Awaitable[None]], timeout: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self._start, self._timeout = start, timeout
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self.started = self._ready.wait(timeout) and self.error is None

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported through `error`; the sink raises a UserError
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def run(self, coro: Awaitable[Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, shutdown: Callable[[], Awaitable[Any]] | None = None) -> None:
        """`shutdown()` on the loop (when given and the loop runs), then stop the loop and the thread."""
        if shutdown is not None and self.loop.is_running():
            self.run(shutdown(), self._timeout)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(self._timeout)
        if not self.loop.is_running() and not self._thread.is_alive():
            self.loop.close()
