"""The OPC UA server (reduced OPC 40100), read by a real asyncua client on loopback: StartSingleJob
is a part trigger, the ResultReady event carries its part id, GetResultById reads the ring, the
VisionSystem state follows the line, and the secure endpoint is offered when configured."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from conftest import free_port

from edgefreq.errors import UserError
from edgefreq.runtime.sinks import open_sink

pytest.importorskip("asyncua")
from asyncua import Client, ua  # noqa: E402

from edgefreq.runtime.sinks.opcua import NAMESPACE  # noqa: E402
from edgefreq.runtime.trigger import Triggers  # noqa: E402


class Events:
    def __init__(self) -> None:
        self.got: list = []

    def event_notification(self, event) -> None:
        self.got.append(event)


async def connect(url: str):
    client = Client(url, timeout=5)
    await client.connect()
    idx = await client.get_namespace_index(NAMESPACE)
    vision = await client.nodes.objects.get_child([f"{idx}:VisionSystem"])
    state = await vision.get_child([f"{idx}:VisionStateMachine", f"{idx}:CurrentState"])
    return client, idx, vision, state


async def wait_for(condition, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def test_start_single_job_triggers_a_part_and_its_result_ready_event_carries_the_part_id(make_decision):
    port = free_port()
    sink = open_sink(f"opcua://127.0.0.1:{port}?results=2")
    triggers, stop = Triggers("opcua"), threading.Event()
    triggers.attach(lambda in_flight: 0)

    def line() -> None:  # answers each trigger at once (the server, not the engine, is under test)
        while not stop.is_set():
            trigger = triggers.match(0)
            if trigger is not None:
                sink.submit(make_decision(0, "NOK" if trigger.part_id.endswith("7") else "OK", part_id=trigger.part_id, trigger_ts=trigger.ts))
            stop.wait(0.001)

    async def plc() -> None:
        client, idx, vision, state = await connect(sink.url)
        try:
            assert await state.read_value() == "Preoperational"
            sink.serve_parts(triggers, carry=True)
            assert await state.read_value() == "Operational"
            events = Events()
            subscription = await client.create_subscription(20, events)
            event_type = await client.nodes.root.get_child(["0:Types", "0:EventTypes", "0:BaseEventType", f"{idx}:ResultReadyEventType"])
            await subscription.subscribe_events(vision, event_type)
            for k, part in enumerate(["4711", "4717", "A-1"]):
                job = await vision.call_method(f"{idx}:StartSingleJob", f"M{k}", part)
                assert job.startswith(f"{part}@")
                assert await wait_for(lambda: len(events.got) == k + 1)
                event = events.got[k]
                assert (event.PartId, event.MeasId) == (part, f"M{k}")
                assert event.ResultState == (2 if part == "4717" else 1) and event.RecipeId == "bottle.onnx@0123456789ab"
                assert set(json.loads(event.ProcessingTimes)) >= {"trigger", "infer", "total"}
            data, error = await vision.call_method(f"{idx}:GetResultById", events.got[2].ResultId)
            assert error == 0 and json.loads(data)["part_id"] == "A-1"
            _, error = await vision.call_method(f"{idx}:GetResultById", events.got[0].ResultId)
            assert error == 1  # the ring keeps the last 2
            with pytest.raises(ua.UaStatusCodeError):  # a part id that is not one
                await vision.call_method(f"{idx}:StartSingleJob", "M9", "../etc")
            sink.source_failed("test: the camera broke")
            assert await state.read_value() == "Error"
        finally:
            await client.disconnect()

    worker = threading.Thread(target=line, daemon=True)
    worker.start()
    try:
        asyncio.run(plc())
    finally:
        stop.set()
        worker.join()
        report = sink.close(timeout=5)
    assert report["sent"] == 3 and report["failed"] == 0


def test_without_trigger_opcua_start_single_job_is_refused(make_decision):
    sink = open_sink(f"opcua://127.0.0.1:{free_port()}")

    async def plc() -> None:
        client, idx, vision, _ = await connect(sink.url)
        try:
            with pytest.raises(ua.UaStatusCodeError):
                await vision.call_method(f"{idx}:StartSingleJob", "M1", "4711")
        finally:
            await client.disconnect()

    try:
        asyncio.run(plc())
    finally:
        sink.close(timeout=5)


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate

    key = generate_private_key()
    cert = generate_self_signed_app_certificate(key, "edgefreq test", {"commonName": "edgefreq"}, [x509.UniformResourceIdentifier("urn:edgefreq:test")],
                                                [ExtendedKeyUsageOID.SERVER_AUTH], days=2)
    (tmp_path / "key.pem").write_bytes(dump_private_key_as_pem(key))
    (tmp_path / "cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return str(tmp_path / "cert.der"), str(tmp_path / "key.pem")


def test_the_secure_endpoint_and_user_token_are_offered_when_configured(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    for name, value in {"EDGEFREQ_OPCUA_CERT": cert, "EDGEFREQ_OPCUA_KEY": key,
                        "EDGEFREQ_OPCUA_USER": "plc", "EDGEFREQ_OPCUA_PASSWORD": "pw"}.items():
        monkeypatch.setenv(name, value)
    sink = open_sink(f"opcua://127.0.0.1:{free_port()}?security=encrypt")

    async def look() -> list:
        client = Client(sink.url, timeout=5)
        return await client.connect_and_get_server_endpoints()

    try:
        endpoints = asyncio.run(look())
    finally:
        sink.close(timeout=5)
    policies = {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints}
    assert policies == {"Basic256Sha256"}  # encrypt only: no unsecured endpoint
    modes = {e.SecurityMode for e in endpoints}
    assert ua.MessageSecurityMode.SignAndEncrypt in modes
    tokens = {t.TokenType for e in endpoints for t in e.UserIdentityTokens}
    assert tokens == {ua.UserTokenType.UserName}  # anonymous refused


def test_bad_security_settings_are_one_line_user_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFREQ_OPCUA_CERT", str(tmp_path / "missing.der"))
    with pytest.raises(UserError, match="both EDGEFREQ_OPCUA_CERT and EDGEFREQ_OPCUA_KEY"):
        open_sink("opcua://127.0.0.1:4999")
    monkeypatch.delenv("EDGEFREQ_OPCUA_CERT")
    with pytest.raises(UserError, match="security=encrypt needs"):
        open_sink("opcua://127.0.0.1:4999?security=encrypt")
    with pytest.raises(UserError, match="credentials"):
        open_sink("opcua://plc:pw@127.0.0.1:4999")
