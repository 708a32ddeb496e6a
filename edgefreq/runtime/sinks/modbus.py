"""Modbus TCP: `modbus://[HOST][:PORT]`, a server (pymodbus >= 3.13) that the PLC polls.

Binds 127.0.0.1:5020 unless the URI names another address (`modbus://0.0.0.0:502` for the
line network; ports below 1024 need root). The register map is in docs/modbus.md:

    coils = discrete inputs   0 ok, 1 nok, 2 ready
    holding = input registers 0 score_norm x1000, 1 parts, 2 OK parts, 3 NOK parts,
                              4 heartbeat (seconds), 5 dropped frames

Everything is read-only for the PLC (writes get exception 2, illegal address). Each read
request is answered from one consistent snapshot, taken under a lock that decision updates
also hold, so a PLC never sees a new counter next to an old verdict.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from typing import Any
from urllib.parse import SplitResult

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edgefreq.runtime.sinks.base import Item, Sink, SinkOptions
from edgefreq.runtime.sinks.uri import bad, port, query

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5020
COIL_OK, COIL_NOK, COIL_READY = 0, 1, 2
REG_SCORE, REG_PARTS, REG_OK, REG_NOK, REG_HEARTBEAT, REG_DROPPED = range(6)
N_REGISTERS = 6
SCORE_SCALE = 1000
START_TIMEOUT_S = 5.0


def score_register(score_norm: float) -> int:
    """score_norm x 1000 rounded into 0..65535 (65535 also for a non-finite score)."""
    if not math.isfinite(score_norm):
        return 0xFFFF
    return min(max(round(score_norm * SCORE_SCALE), 0), 0xFFFF)


def _bind_problem(host: str, port: int) -> str:
    """Why binding host:port fails, in the operating system's words."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        hint = " (ports below 1024 need root)" if port < 1024 else ""
        return f"{exc.strerror or exc}{hint}"
    return "pymodbus could not listen there"


class ModbusSink(Sink):
    """The latest verdict, counters and a heartbeat as coils and registers for a polling PLC."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, options: SinkOptions | None = None, uri: str | None = None) -> None:
        super().__init__(uri or f"modbus://{host}:{port}", options)
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._started_at = time.monotonic()
        self._coils = [False, False, False]
        self._registers = [0] * N_REGISTERS
        self._server: ModbusTcpServer | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._server_thread = threading.Thread(target=self._serve, name=f"modbus server {host}:{port}", daemon=True)
        self._server_thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._start_error is not None:
            self._stop_server()
            why = "the server did not start in time" if self._start_error is None else _bind_problem(host, port)
            raise bad(self.name, f"cannot listen on {host}:{port}: {why}")

    @classmethod
    def from_uri(cls, uri: str, parts: SplitResult, options: SinkOptions) -> ModbusSink:
        query(uri, parts, ())
        if parts.path not in ("", "/"):
            raise bad(uri, "takes no path: modbus://HOST:PORT (default 127.0.0.1:5020)")
        return cls(parts.hostname or DEFAULT_HOST, port(uri, parts, DEFAULT_PORT), options, uri)

    def snapshot(self) -> tuple[list[bool], list[int]]:
        """(coils, registers) as the PLC would read them now."""
        with self._lock:
            registers = list(self._registers)
            coils = list(self._coils)
        registers[REG_HEARTBEAT] = int(time.monotonic() - self._started_at) & 0xFFFF
        return coils, registers

    def _deliver(self, item: Item) -> None:
        d = item.decision
        ok = d.verdict == "OK"
        with self._lock:
            r = self._registers
            r[REG_SCORE] = score_register(d.score_norm)
            r[REG_PARTS] = (r[REG_PARTS] + 1) & 0xFFFF
            r[REG_OK if ok else REG_NOK] = (r[REG_OK if ok else REG_NOK] + 1) & 0xFFFF
            r[REG_DROPPED] = d.dropped & 0xFFFF
            self._coils = [ok, not ok, True]

    # -- the server, on its own asyncio loop in its own thread ------------------------------

    async def _action(
        self, function_code: int, start: int, address: int, count: int, registers: list[int], values: Any
    ) -> ExcCodes | None:
        """pymodbus calls this on every request: fill the block from one snapshot, refuse writes."""
        if values is not None:
            return ExcCodes.ILLEGAL_ADDRESS
        coils, regs = self.snapshot()
        if function_code in (1, 2):
            registers[0] = sum(1 << i for i, bit in enumerate(coils) if bit)  # bit i = coil i
        else:
            registers[:N_REGISTERS] = regs
        return None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to __init__, which raises a UserError
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        def bits() -> list[SimData]:
            return [SimData(0, count=16, values=False, datatype=DataType.BITS, readonly=True)]

        def words() -> list[SimData]:
            return [SimData(0, count=N_REGISTERS, values=0, datatype=DataType.REGISTERS, readonly=True)]

        # device id 0 answers every unit id; blocks: coils, discrete inputs, holding, input registers
        device = SimDevice(0, simdata=(bits(), bits(), words(), words()), action=self._action)
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    def _stop_server(self) -> None:
        if self._server is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            future.result(timeout=START_TIMEOUT_S)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._server_thread.join(START_TIMEOUT_S)
        if not self._loop.is_running() and not self._server_thread.is_alive():
            self._loop.close()

    def _release(self) -> None:
        self._stop_server()
