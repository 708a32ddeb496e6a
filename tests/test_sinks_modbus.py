"""Modbus TCP server sink, read by a real pymodbus client as a PLC would (map: docs/modbus.md)."""

from __future__ import annotations

import math
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
