"""OPC UA: `opcua://[HOST][:PORT]`, a server (asyncua) with a reduced OPC 40100 (Machine Vision) model.

Binds 127.0.0.1:4840 unless the URI names another address; `?results=N` sizes the ring that
GetResultById reads (default 100). The model, in namespace `urn:edgefreq:MachineVision` and with
the specification's names (docs/opcua.md):

    Objects/VisionSystem
        VisionStateMachine/CurrentState   "Preoperational" (starting), "Operational", "Error"
        StartSingleJob(MeasId, PartId) -> JobId       a part trigger (`--trigger opcua`)
        GetResultById(ResultId) -> (ResultData, Error) the decision record (JSON) of a recent result
        events: ResultReadyEventType (ResultId, MeasId, PartId, ResultState, RecipeId,
                CreationTime, ProcessingTimes), one per decision

Security: Basic256Sha256 (Sign and SignAndEncrypt) is offered when EDGEFREQ_OPCUA_CERT and
EDGEFREQ_OPCUA_KEY name the server's certificate and key; `?security=encrypt` then drops the
unsecured endpoint. EDGEFREQ_OPCUA_USER and EDGEFREQ_OPCUA_PASSWORD require that user name token
(anonymous clients are refused).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import hmac
import json
import logging
import os
import threading
from pathlib import Path

from asyncua import Server, ua, uamethod
from asyncua.server.user_managers import UserManager
from asyncua.crypto.permission_rules import User, UserRole

from edgefreq.runtime.sinks.base import Item, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.sinks.server_thread import ServerThread
from edgefreq.runtime.uri import Uri, uri_error

log = logging.getLogger("edgefreq.sinks")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 4840
NAMESPACE = "urn:edgefreq:MachineVision"
STATES = ("Preoperational", "Operational", "Error")
RESULT_STATE = {"OK": 1, "NOK": 2}  # OPC 40100 ResultStateDataType: 1 Ok, 2 NotOk
START_TIMEOUT_S = 10.0
DEFAULT_RESULTS = 100
ENV = ("EDGEFREQ_OPCUA_CERT", "EDGEFREQ_OPCUA_KEY", "EDGEFREQ_OPCUA_USER", "EDGEFREQ_OPCUA_PASSWORD")


class OneUser(UserManager):
    """The user name token from the environment; everyone else is refused."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None or password is None:
            return None
        given = password if isinstance(password, bytes) else str(password).encode()
        if hmac.compare_digest(str(username).encode(), self.user) and hmac.compare_digest(given, self.password):
            return User(role=UserRole.User)
        return None


class OpcUaSink(Sink):
    """The VisionSystem of OPC 40100 (reduced): state, StartSingleJob, ResultReady, GetResultById."""

    trigger_mode = "opcua"

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, options: SinkOptions | None = None,
                 uri: str | None = None, results: int = DEFAULT_RESULTS, encrypt_only: bool = False,
                 environ: dict[str, str] | None = None) -> None:
        super().__init__(uri or f"opcua://{host}:{port}", options)
        env = os.environ if environ is None else environ
        self.host, self.port = host, port
        self.url = f"opc.tcp://{host}:{port}/edgefreq/"
        cert, key, user, password = (env.get(name) or None for name in ENV)
        if (cert is None) != (key is None) or (user is None) != (password is None):
            raise uri_error("sink", self.name, "set both EDGEFREQ_OPCUA_CERT and EDGEFREQ_OPCUA_KEY, and both or neither of "
                                 "EDGEFREQ_OPCUA_USER and EDGEFREQ_OPCUA_PASSWORD")
        for path in (cert, key):
            if path is not None and not Path(path).is_file():
                raise uri_error("sink", self.name, f"no such certificate or key file: {path}")
        if encrypt_only and cert is None:
            raise uri_error("sink", self.name, "security=encrypt needs EDGEFREQ_OPCUA_CERT and EDGEFREQ_OPCUA_KEY")
        self._cert, self._key, self._encrypt_only = cert, key, encrypt_only
        self._user = OneUser(user, password) if user is not None else None
        self._ring: collections.OrderedDict[str, str] = collections.OrderedDict()  # ResultId -> record JSON
        self._ring_max = results
        self._meas: dict[str, collections.deque[str]] = {}  # PartId -> MeasIds of started jobs, oldest first
        self._lock = threading.Lock()
        self._triggers = None
        self._results = 0
        self._serving = ServerThread(f"opcua server {host}:{port}", self._start, START_TIMEOUT_S)
        if not self._serving.started:
            self._stop_server()
            error = self._serving.error
            why = "the server did not start in time" if error is None else f"{type(error).__name__}: {error}"
            raise uri_error("sink", self.name, f"cannot serve on {host}:{port}: {why}")

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> OpcUaSink:
        uri.no_credentials("EDGEFREQ_OPCUA_USER and EDGEFREQ_OPCUA_PASSWORD")
        values = uri.options(("results", "security"))
        if uri.parts.path not in ("", "/"):
            raise uri.error("takes no path: opcua://HOST:PORT (default 127.0.0.1:4840)")
        if values.get("security", "any") not in ("any", "encrypt"):
            raise uri.error("security must be any (default) or encrypt")
        results = int(uri.number("results", values["results"], int, 1, 100000)) if "results" in values else DEFAULT_RESULTS
        return cls(uri.parts.hostname or DEFAULT_HOST, uri.port(DEFAULT_PORT), options, uri.text, results,
                   values.get("security") == "encrypt")

    # -- the line's side ----------------------------------------------------------------------

    def serve_parts(self, triggers, carry: bool) -> None:
        """Part mode; with `carry` StartSingleJob fires `triggers`. The line is about to run: Operational."""
        self._triggers = triggers if carry else None
        self.set_state("Operational")

    def set_state(self, state: str, reason: str | None = None) -> None:
        if reason:
            log.warning("sink %s: VisionSystem %s: %s", self.name, state, reason)
        self._serving.run(self._state.write_value(state), START_TIMEOUT_S)

    def source_failed(self, reason: str) -> None:
        """The loop's source broke: the VisionSystem is in Error."""
        self.set_state("Error", reason)

    def _deliver(self, item: Item) -> None:
        self._serving.run(self._publish(item.decision), self.options.timeout_s)

    async def _publish(self, d) -> None:
        if await self._state.read_value() == "Preoperational":
            await self._state.write_value("Operational")  # free-running: the first decision
        with self._lock:
            self._results += 1
            result_id = f"{d.part_id or 'frame'}-{self._results}"
            meas = self._meas.get(d.part_id or "")
            meas_id = meas.popleft() if meas else ""
            if meas is not None and not meas:
                del self._meas[d.part_id]
            self._ring[result_id] = d.to_json()
            while len(self._ring) > self._ring_max:
                self._ring.popitem(last=False)
        event = self._events.event
        event.ResultId, event.MeasId, event.PartId = result_id, meas_id, d.part_id or ""
        event.ResultState = RESULT_STATE[d.verdict]
        event.RecipeId = d.engine
        event.CreationTime = datetime.datetime.fromtimestamp(d.decided_ts, datetime.timezone.utc)
        event.ProcessingTimes = json.dumps({k: round(v, 3) for k, v in d.latency_ms.items()})
        event.Severity = 100 if d.verdict == "OK" else 500
        await self._events.trigger(message=f"{d.part_id or d.frame_id}: {d.verdict}" + (f" ({d.reason})" if d.reason else ""))

    # -- the server, on its own asyncio loop in its own thread ---------------------------------

    async def _start(self) -> None:
        server = Server(user_manager=self._user) if self._user is not None else Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("edgefreq VisionSystem")
        policies = [] if self._encrypt_only else [ua.SecurityPolicyType.NoSecurity]
        if self._cert is not None:
            await server.load_certificate(self._cert)
            await server.load_private_key(self._key)
            policies += [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign]
        server.set_security_policy(policies)
        server.set_identity_tokens([ua.UserNameIdentityToken] if self._user is not None else [ua.AnonymousIdentityToken])
        idx = await server.register_namespace(NAMESPACE)
        vision = await server.nodes.objects.add_object(idx, "VisionSystem")
        machine = await vision.add_object(idx, "VisionStateMachine")
        self._state = await machine.add_variable(idx, "CurrentState", "Preoperational")
        string, integer = ua.VariantType.String, ua.VariantType.Int32
        await vision.add_method(idx, "StartSingleJob", uamethod(self._start_single_job), [string, string], [string])
        await vision.add_method(idx, "GetResultById", uamethod(self._get_result_by_id), [string], [string, integer])
        event_type = await server.create_custom_event_type(idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType, [
            ("ResultId", string), ("MeasId", string), ("PartId", string), ("ResultState", integer),
            ("RecipeId", string), ("CreationTime", ua.VariantType.DateTime), ("ProcessingTimes", string),
        ])
        self._events = await server.get_event_generator(event_type, vision)
        await server.start()
        self._server = server

    async def _start_single_job(self, parent, meas_id: str, part_id: str) -> str:
        """StartSingleJob(MeasId, PartId) -> JobId: the part trigger. A bad part id or no --trigger opcua: Bad status."""
        triggers = self._triggers
        if triggers is None:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState)  # not started with --trigger opcua
        try:  # in the executor: a camera's software trigger may take a while
            trigger = await asyncio.get_running_loop().run_in_executor(None, triggers.fire, part_id, "opcua", meas_id)
        except ValueError:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidArgument) from None
        except RuntimeError:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState) from None
        with self._lock:
            self._meas.setdefault(trigger.part_id, collections.deque()).append(str(meas_id))
        return f"{trigger.part_id}@{trigger.ts:.6f}"

    async def _get_result_by_id(self, parent, result_id: str) -> tuple[str, ua.Variant]:
        """GetResultById(ResultId) -> (ResultData: the decision record JSON, Error: 0, or 1 unknown / no longer kept)."""
        with self._lock:
            record = self._ring.get(result_id)
        return record or "", ua.Variant(0 if record else 1, ua.VariantType.Int32)

    def _stop_server(self) -> None:
        server = getattr(self, "_server", None)
        self._serving.stop(server.stop if server is not None else None)

    def _release(self) -> None:
        self._stop_server()
