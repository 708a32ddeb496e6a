"""Modbus TCP server sink, read by a real pymodbus client as a PLC would (map: docs/modbus.md)."""

from __future__ import annotations

import math
import threading
import time

import pytest
from conftest import free_port, wait_until

from edgefreq.errors import UserError
from edgefreq.runtime.sinks import open_sink

pytest.importorskip("pymodbus")
from pymodbus.client import ModbusTcpClient  # noqa: E402

from edgefreq.runtime.sinks.modbus import score_register  # noqa: E402

OK, NOK, READY = 0, 1, 2
SCORE, PARTS, OK_PARTS, NOK_PARTS, HEARTBEAT, DROPPED = range(6)


@pytest.fixture
def plc_and_sink():
    port = free_port()
    sink = open_sink(f"modbus://127.0.0.1:{port}")
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert client.connect()
    yield client, sink
    client.close()
    sink.close(timeout=5)


def read(client: ModbusTcpClient) -> tuple[list[bool], list[int], list[int], list[bool]]:
    coils = client.read_coils(0, count=3)
    inputs = client.read_discrete_inputs(0, count=3)
    holding = client.read_holding_registers(0, count=6)
    input_regs = client.read_input_registers(0, count=6)
    for reply in (coils, inputs, holding, input_regs):
        assert not reply.isError(), reply
    return coils.bits[:3], holding.registers, input_regs.registers, inputs.bits[:3]


def test_plc_reads_verdicts_counters_and_heartbeat(plc_and_sink, make_decision):
    client, sink = plc_and_sink
    coils, regs, _, _ = read(client)
    assert coils == [False, False, False] and regs[PARTS] == 0  # not ready before the first decision

    sink.submit(make_decision(1, "OK", score_norm=0.4321, dropped=2))
    assert wait_until(lambda: read(client)[1][PARTS] == 1)
    coils, regs, input_regs, inputs = read(client)
    assert coils == [True, False, True] and inputs == coils
    assert regs == input_regs
    assert regs[SCORE] == 432 and regs[OK_PARTS] == 1 and regs[NOK_PARTS] == 0 and regs[DROPPED] == 2

    sink.submit(make_decision(2, "NOK", score_norm=3.5))
    assert wait_until(lambda: read(client)[1][PARTS] == 2)
    coils, regs, _, _ = read(client)
    assert coils == [False, True, True]
    assert regs[SCORE] == 3500 and regs[OK_PARTS] == 1 and regs[NOK_PARTS] == 1

    beat = regs[HEARTBEAT]
    time.sleep(1.1)
    assert read(client)[1][HEARTBEAT] > beat


def test_plc_cannot_write(plc_and_sink):
    client, _ = plc_and_sink
    assert client.write_coil(OK, True).isError()
    assert client.write_register(SCORE, 7).isError()
    assert read(client)[0] == [False, False, False]


def test_binds_loopback_by_default_and_busy_port_is_a_user_error():
    port = free_port()
    sink = open_sink(f"modbus://:{port}")
    try:
        assert sink.host == "127.0.0.1"
        assert listening_addresses(port) == ["127.0.0.1"]  # the socket itself, not an attribute: loopback only
        with pytest.raises(UserError, match="cannot listen") as info:
            open_sink(f"modbus://127.0.0.1:{port}")
        assert "\n" not in str(info.value)
    finally:
        sink.close(timeout=5)
    assert wait_until(lambda: _refused(port))  # the server is gone after close


def listening_addresses(port: int) -> list[str]:
    """The local addresses of the TCP sockets listening on `port`, from the kernel's own table."""
    import ipaddress
    from pathlib import Path

    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("needs Linux /proc/net/tcp to see which address a socket is bound to")
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(name)
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # kernel order: 32-bit little-endian words
                found.append(str(ipaddress.ip_address(words)))
    return found


def _refused(port: int) -> bool:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
    try:
        return not client.connect()
    finally:
        client.close()


def test_score_scaling_clamps():
    assert score_register(1.2344) == 1234 and score_register(-1.0) == 0
    assert score_register(1e6) == 65535 and score_register(math.nan) == 65535


# -- the part handshake (docs/modbus.md): the PLC triggers parts and acknowledges their results --

TRIGGER, RESULT_READY, RESULT_ACK = 3, 4, 5
PART_HI, TRIGGERS_TAKEN = 10, 12
RESULT_SEQ, RESULT_VERDICT, RESULT_INSPECTED, RESULTS_WAITING, RESULTS_LOST = 20, 23, 25, 26, 27


class Plc:
    """What a PLC program does, over a real pymodbus client: write the part id, set the trigger
    coil; poll result_ready and the sequence number, read the result, acknowledge it."""

    def __init__(self, client: ModbusTcpClient) -> None:
        self.client, self.seq = client, 0

    def trigger(self, part: int) -> None:
        assert not self.client.write_registers(PART_HI, [part >> 16, part & 0xFFFF]).isError()
        assert not self.client.write_coil(TRIGGER, True).isError()

    def result(self, timeout: float = 5.0) -> tuple[int, int, int]:
        """(part id, verdict code, inspected) of the next result, acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            coils = self.client.read_coils(0, count=6).bits
            regs = self.client.read_holding_registers(20, count=8).registers
            if coils[RESULT_READY] and regs[0] != self.seq:
                self.seq = regs[0]
                assert not self.client.write_coil(RESULT_ACK, True).isError()
                return (regs[1] << 16) | regs[2], regs[3], regs[5]
        raise AssertionError("no result within the timeout")


def fake_line(sink, triggers, make_decision, stop):
    """Answers every trigger at once with a decision for its part (the handshake, not the engine, under test)."""
    triggers.attach(lambda in_flight: 0)
    frame = 0
    while not stop.is_set():
        trigger = triggers.match(frame)
        if trigger is None:
            time.sleep(0.0002)
            continue
        verdict = "NOK" if int(trigger.part_id) % 7 == 0 else "OK"
        sink.submit(make_decision(frame, verdict, part_id=trigger.part_id, trigger_ts=trigger.ts))
        frame += 1


def test_a_plc_drives_1000_parts_through_the_handshake_none_lost_or_mismatched(plc_and_sink, make_decision):
    pytest.importorskip("torch")  # the trigger queue imports the inspector's types
    from edgefreq.runtime.trigger import Triggers

    client, sink = plc_and_sink
    triggers, stop = Triggers("modbus", capacity=4, timeout_s=5), threading.Event()
    sink.serve_parts(triggers, carry=True)
    worker = threading.Thread(target=fake_line, args=(sink, triggers, make_decision, stop), daemon=True)
    worker.start()
    plc, seen = Plc(client), []
    try:
        for k in range(1000):
            part = 70000 + k * 4099  # above 16 bits: both words carry the id
            plc.trigger(part)
            got, verdict, inspected = plc.result()
            assert got == part and verdict == (2 if part % 7 == 0 else 1) and inspected == 1
            seen.append(got)
    finally:
        stop.set()
        worker.join()
    assert len(set(seen)) == 1000 and triggers.stats()["fired"] == 1000
    regs = client.read_holding_registers(0, count=28).registers
    assert regs[TRIGGERS_TAKEN] == 1000 and regs[PARTS] == 1000 and regs[RESULTS_LOST] == 0 and regs[RESULTS_WAITING] == 0


def test_results_wait_for_the_acknowledgement_in_order(plc_and_sink, make_decision):
    client, sink = plc_and_sink
    sink.serve_parts(None, carry=False)
    for k in range(3):
        sink.submit(make_decision(k, "OK", part_id=str(100 + k)))
    assert wait_until(lambda: client.read_holding_registers(0, count=28).registers[RESULTS_WAITING] == 2)
    plc = Plc(client)
    assert [plc.result()[0] for _ in range(3)] == [100, 101, 102]
    coils = client.read_coils(0, count=6).bits
    assert not coils[RESULT_READY] and not coils[RESULT_ACK]  # the ack is taken, nothing left to show


def test_a_plc_that_never_acknowledges_costs_the_line_nothing_and_is_counted(make_decision):
    port = free_port()
    sink = open_sink(f"modbus://127.0.0.1:{port}?results=8")
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert client.connect()
    try:
        sink.serve_parts(None, carry=False)
        start = time.perf_counter()
        for k in range(200):  # within the sink's own queue (256): the handshake's queue is under test
            sink.submit(make_decision(k, "OK", part_id=str(k)))
        assert time.perf_counter() - start < 1.0  # submit never waits for the PLC
        assert wait_until(lambda: client.read_holding_registers(0, count=28).registers[PARTS] == 200)
        regs = client.read_holding_registers(0, count=28).registers
        assert regs[RESULTS_WAITING] == 8 and regs[RESULTS_LOST] == 200 - 1 - 8
        assert ((regs[21] << 16) | regs[22]) == 0  # still the first result, waiting for its ack
        assert Plc(client).result()[0] == 0 and Plc(client).result()[0] == 200 - 8  # then the newest 8
    finally:
        client.close()
        report = sink.close(timeout=5)
    assert report["dropped"] == 191 and report["sent"] == 9  # lost results are counted, never sent


def test_the_plc_may_write_only_the_trigger_ack_and_part_id(plc_and_sink):
    client, sink = plc_and_sink
    assert client.write_coil(RESULT_READY, True).isError()  # edgefreq's flag, not the PLC's
    assert client.write_registers(RESULT_SEQ, [9]).isError()
    assert client.write_registers(PART_HI - 1, [1, 2]).isError()  # one word outside the part id
    assert not client.write_registers(PART_HI, [1, 2]).isError()
    assert client.read_holding_registers(PART_HI, count=2).registers == [1, 2]
    assert client.write_coil(TRIGGER, True).isError()  # not the trigger carrier: edgefreq runs without --trigger modbus
    assert not client.write_coil(RESULT_ACK, True).isError()


def test_a_real_line_answers_each_plc_part_with_its_own_frame(make_decision):
    """The loop with the embedded engine and a camera; the PLC triggers 20 parts over Modbus."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from test_trigger import Camera

    from edgefreq.runtime.backends import EMBEDDED, open_backend
    from edgefreq.runtime.capture import Capture
    from edgefreq.runtime.inspector import Inspector
    from edgefreq.runtime.loop import run_line
    from edgefreq.runtime.sources import SourceOptions
    from edgefreq.runtime.trigger import Triggers, connect_triggers

    port = free_port()
    sink = open_sink(f"modbus://127.0.0.1:{port}")
    camera = Camera(period=0.01)
    triggers, stop = Triggers("modbus", timeout_s=2), threading.Event()
    connect_triggers(triggers, [sink], None, camera)
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert client.connect()
    results = []

    def plc() -> None:
        p = Plc(client)
        try:
            for k in range(20):
                p.trigger(1000 + k)
                results.append(p.result())
        finally:
            stop.set()

    driver = threading.Thread(target=plc)
    driver.start()
    summary = run_line(Capture(camera, SourceOptions(), capacity=4), Inspector(open_backend(EMBEDDED, threads=1)), [sink], stop, triggers=triggers)
    driver.join()
    client.close()
    assert [r[0] for r in results] == [1000 + k for k in range(20)] and all(r[2] == 1 for r in results)
    assert summary.triggers["matched"] == 20 and summary.sinks[sink.name]["sent"] == 20


def test_the_trigger_mode_needs_its_server():
    pytest.importorskip("torch")  # the trigger module imports the inspector
    from edgefreq.runtime.trigger import Triggers, take_triggers

    with pytest.raises(UserError, match="--sink modbus://"):
        take_triggers(Triggers("modbus"), ["out.jsonl", "mqtt://broker/modbus"], None)
