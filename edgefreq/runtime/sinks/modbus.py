"""Modbus TCP: `modbus://[HOST][:PORT]`, a server (pymodbus >= 3.13) that the PLC polls.

Binds 127.0.0.1:5020 unless the URI names another address (`modbus://0.0.0.0:502` for the
line network; ports below 1024 need root); `?results=N` sizes the handshake's result queue
(default 64). The register map and the handshake are in docs/modbus.md:

    coils = discrete inputs   0 ok, 1 nok, 2 ready, 3 trigger (PLC writes), 4 result_ready,
                              5 result_ack (PLC writes)
    holding = input registers 0 score_norm x1000, 1 parts, 2 OK parts, 3 NOK parts,
                              4 heartbeat (seconds), 5 dropped frames,
                              10-11 part id (PLC writes, high word first), 12 triggers taken,
                              13 triggers refused, 20 result sequence number, 21-22 result part id,
                              23 result verdict (1 OK, 2 NOK), 24 result score, 25 result inspected,
                              26 results waiting, 27 results lost to a full queue

The PLC may write only coils 3 and 5 and holding registers 10-11 (other writes get exception 2,
illegal address). With `--trigger modbus` setting coil 3 announces the part whose id is in
10-11. In part mode (any --trigger but free) results wait for the PLC's acknowledgement (coil 5):
one is shown in 20-25 until acknowledged, the rest queue (at most `results`; beyond it the
oldest is dropped and counted in 27 and the sink's `dropped`); a PLC that never acknowledges
costs the line nothing. Free-running, 20-25 always show the latest decision.

Each request is answered from one consistent snapshot, taken under a lock that decision updates
also hold, so a PLC never sees a new counter next to an old verdict.
"""

from __future__ import annotations

import collections
import logging
import math
import socket
import threading
import time
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edgefreq.runtime.sinks.base import Item, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.sinks.server_thread import ServerThread
from edgefreq.runtime.uri import Uri, uri_error

log = logging.getLogger("edgefreq.sinks")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5020
COIL_OK, COIL_NOK, COIL_READY, COIL_TRIGGER, COIL_RESULT_READY, COIL_RESULT_ACK = range(6)
N_COILS = 6
WRITABLE_COILS = (COIL_TRIGGER, COIL_RESULT_ACK)
REG_SCORE, REG_PARTS, REG_OK, REG_NOK, REG_HEARTBEAT, REG_DROPPED = range(6)
REG_PART_HI, REG_PART_LO, REG_TRIGGERS, REG_REFUSED = range(10, 14)
(REG_RESULT_SEQ, REG_RESULT_PART_HI, REG_RESULT_PART_LO, REG_RESULT_VERDICT, REG_RESULT_SCORE,
 REG_RESULT_INSPECTED, REG_RESULTS_WAITING, REG_RESULTS_LOST) = range(20, 28)
WRITABLE_REGISTERS = (REG_PART_HI, REG_PART_LO)
N_REGISTERS = 28
VERDICT_CODES = {"OK": 1, "NOK": 2}
NO_PART = 0xFFFFFFFF  # a part id that is not a number 0 .. 2^32 - 2 (from OPC UA or HTTP)
SCORE_SCALE = 1000
START_TIMEOUT_S = 5.0
DEFAULT_RESULTS = 64


def score_register(score_norm: float) -> int:
    """score_norm x 1000 rounded into 0..65535 (65535 also for a non-finite score)."""
    if not math.isfinite(score_norm):
        return 0xFFFF
    return min(max(round(score_norm * SCORE_SCALE), 0), 0xFFFF)


def part_number(part_id: str | None) -> int:
    """A record's part id as the 32-bit number of registers 21-22 (NO_PART when it is not one)."""
    if part_id is None or not part_id.isdigit() or int(part_id) >= NO_PART:
        return NO_PART
    return int(part_id)


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
    """The latest verdict, counters, a heartbeat and the part handshake for a polling PLC."""

    trigger_mode = "modbus"

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, options: SinkOptions | None = None,
                 uri: str | None = None, results: int = DEFAULT_RESULTS) -> None:
        super().__init__(uri or f"modbus://{host}:{port}", options)
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._started_at = time.monotonic()
        self._coils = [False] * N_COILS
        self._registers = [0] * N_REGISTERS
        self._handshake = False  # part mode: results wait for the PLC's acknowledgement
        self._triggers = None  # the Triggers the trigger coil fires (--trigger modbus)
        self._results: collections.deque[tuple[int, int, int, int]] = collections.deque()
        self._results_max = results
        self._server: ModbusTcpServer | None = None
        self._serving = ServerThread(f"modbus server {host}:{port}", self._start, START_TIMEOUT_S)
        if not self._serving.started:
            self._stop_server()
            why = "the server did not start in time" if self._serving.error is None else _bind_problem(host, port)
            raise uri_error("sink", self.name, f"cannot listen on {host}:{port}: {why}")

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> ModbusSink:
        values = uri.options(("results",))
        if uri.parts.path not in ("", "/"):
            raise uri.error("takes no path: modbus://HOST:PORT (default 127.0.0.1:5020)")
        results = int(uri.number("results", values["results"], int, 1, 65535)) if "results" in values else DEFAULT_RESULTS
        return cls(uri.parts.hostname or DEFAULT_HOST, uri.port(DEFAULT_PORT), options, uri.text, results)

    def serve_parts(self, triggers, carry: bool) -> None:
        """Part mode: results wait for the PLC's acknowledgement; with `carry` the trigger coil fires `triggers`."""
        with self._lock:
            self._handshake = True
            self._triggers = triggers if carry else None

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
        result = (part_number(d.part_id), VERDICT_CODES[d.verdict], score_register(d.score_norm), int(d.reason is None))
        lost = 0
        with self._lock:
            r = self._registers
            r[REG_SCORE] = score_register(d.score_norm)
            r[REG_PARTS] = (r[REG_PARTS] + 1) & 0xFFFF
            r[REG_OK if ok else REG_NOK] = (r[REG_OK if ok else REG_NOK] + 1) & 0xFFFF
            r[REG_DROPPED] = d.dropped & 0xFFFF
            self._coils[COIL_OK], self._coils[COIL_NOK], self._coils[COIL_READY] = ok, not ok, True
            if not self._handshake or not self._coils[COIL_RESULT_READY]:
                self._show(result)
            else:
                self._results.append(result)
                if len(self._results) > self._results_max:
                    self._results.popleft()
                    r[REG_RESULTS_LOST] = (r[REG_RESULTS_LOST] + 1) & 0xFFFF
                    lost = 1
            r[REG_RESULTS_WAITING] = min(len(self._results), 0xFFFF)
        if lost:
            with self._cond:  # delivered into the map, then lost before the PLC read it: dropped, not sent
                self._counts["sent"] -= 1
                self._counts["dropped"] += 1
            if self._counts["dropped"] == 1:
                log.warning("sink %s: the PLC does not acknowledge results; more than %d waiting, the oldest are dropped",
                            self.name, self._results_max)

    def _show(self, result: tuple[int, int, int, int]) -> None:
        """Put a result into registers 20-25 and set result_ready (under the lock)."""
        r = self._registers
        r[REG_RESULT_SEQ] = r[REG_RESULT_SEQ] % 0xFFFF + 1  # 1 .. 65535, then 1 again: 0 means none yet
        part, r[REG_RESULT_VERDICT], r[REG_RESULT_SCORE], r[REG_RESULT_INSPECTED] = result
        r[REG_RESULT_PART_HI], r[REG_RESULT_PART_LO] = part >> 16, part & 0xFFFF
        self._coils[COIL_RESULT_READY] = True

    def _acknowledge(self) -> None:
        """The PLC read the result: show the next one waiting, if any (under the lock)."""
        if not self._coils[COIL_RESULT_READY]:
            return
        self._coils[COIL_RESULT_READY] = False
        if self._results:
            self._show(self._results.popleft())
        self._registers[REG_RESULTS_WAITING] = len(self._results)

    def _trigger(self) -> ExcCodes | None:
        """The PLC set the trigger coil: announce the part in registers 10-11 (not under the lock)."""
        with self._lock:
            triggers, r = self._triggers, self._registers
            part = (r[REG_PART_HI] << 16) | r[REG_PART_LO]
        if triggers is None:
            return ExcCodes.ILLEGAL_ADDRESS  # not the trigger carrier: edgefreq runs without --trigger modbus
        try:
            triggers.fire(part, via="modbus")
        except (RuntimeError, ValueError) as exc:  # the line is stopping
            log.warning("sink %s: trigger for part %d refused: %s", self.name, part, exc)
            with self._lock:
                r[REG_REFUSED] = (r[REG_REFUSED] + 1) & 0xFFFF
            return ExcCodes.DEVICE_FAILURE
        with self._lock:
            r[REG_TRIGGERS] = (r[REG_TRIGGERS] + 1) & 0xFFFF
        return None

    def _write(self, function_code: int, address: int, values: Any) -> ExcCodes | None:
        """A PLC write: only the trigger and acknowledge coils and the part id registers."""
        values = values if isinstance(values, list) else [values]
        if function_code in (5, 15):
            if not all(address + k in WRITABLE_COILS for k in range(len(values))):
                return ExcCodes.ILLEGAL_ADDRESS
            for k, value in enumerate(values):
                if value and address + k == COIL_TRIGGER and (refused := self._trigger()) is not None:
                    return refused
                if value and address + k == COIL_RESULT_ACK:
                    with self._lock:
                        self._acknowledge()
            return None
        if function_code in (6, 16):
            if not all(address + k in WRITABLE_REGISTERS for k in range(len(values))):
                return ExcCodes.ILLEGAL_ADDRESS
            with self._lock:
                for k, value in enumerate(values):
                    self._registers[address + k] = int(value) & 0xFFFF
            return None
        return ExcCodes.ILLEGAL_FUNCTION

    # -- the server, on its own asyncio loop in its own thread ------------------------------

    async def _action(
        self, function_code: int, start: int, address: int, count: int, registers: list[int], values: Any
    ) -> ExcCodes | None:
        """pymodbus calls this on every request: handle a write, fill the block from one snapshot."""
        if values is not None and (refused := self._write(function_code, address, values)) is not None:
            return refused
        coils, regs = self.snapshot()
        if function_code in (1, 2):
            registers[0] = sum(1 << i for i, bit in enumerate(coils) if bit)  # bit i = coil i
        else:
            registers[:N_REGISTERS] = regs
        return None

    async def _start(self) -> None:
        def bits(readonly: bool) -> list[SimData]:
            return [SimData(0, count=16, values=False, datatype=DataType.BITS, readonly=readonly)]

        def words(readonly: bool) -> list[SimData]:
            return [SimData(0, count=N_REGISTERS, values=0, datatype=DataType.REGISTERS, readonly=readonly)]

        # device id 0 answers every unit id; blocks: coils, discrete inputs, holding, input registers.
        # Coils and holding registers accept writes here; _write lets through only the PLC's few.
        device = SimDevice(0, simdata=(bits(False), bits(True), words(False), words(True)), action=self._action)
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    def _stop_server(self) -> None:
        self._serving.stop(self._server.shutdown if self._server is not None else None)

    def _release(self) -> None:
        with self._lock:
            waiting = len(self._results) + self._coils[COIL_RESULT_READY] * self._handshake
        if waiting:
            log.warning("sink %s: %d results were never acknowledged by the PLC", self.name, waiting)
        self._stop_server()
