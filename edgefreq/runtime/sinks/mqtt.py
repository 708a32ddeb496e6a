"""MQTT: `mqtt://host[:1883]/topic` and `mqtts://host[:8883]/topic` (TLS), paho-mqtt 2.x.

Options: `qos=0|1|2` (default 1), `retain=0|1` (default 0), `client_id=NAME` (default: random),
`status=TOPIC` (default TOPIC/status). Each decision is published as its JSON record. The status
topic holds a retained "online" while connected and "offline" after close, and the broker sets
"offline" itself (last will) when the connection dies without a goodbye.

Environment: EDGEFREQ_MQTT_USERNAME / EDGEFREQ_MQTT_PASSWORD (credentials are never read from
the URI); for mqtts://, EDGEFREQ_MQTT_CA (CA bundle; the system CAs when unset) and
EDGEFREQ_MQTT_CERT / EDGEFREQ_MQTT_KEY (client certificate, for brokers that require one).

paho's network thread connects in the background and reconnects after a loss (every 1-2 s: a
line wants its decisions back within seconds of the broker, not after paho's default 30 s
backoff); the broker being down at start is not an error. A decision counts as sent when the
broker acknowledged it (QoS 1/2) or it was written to the socket (QoS 0). While disconnected the
worker waits for the connection instead of using up the decision's retries, so what is queued
during an outage (the newest `queue` decisions) is delivered when the broker is back; a broker
that refuses the login fails decisions (retried, then counted). A decision whose acknowledgement
timed out may still arrive later (QoS 1 is at-least-once).
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefreq.runtime.sinks.base import Item, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.uri import Uri, uri_error

log = logging.getLogger("edgefreq.sinks")

KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 2
WAIT_STEP_S = 0.05  # how often a worker waiting for the broker looks at close()


def _topic(uri: Uri, topic: str, what: str) -> str:
    if not topic or "+" in topic or "#" in topic:
        raise uri.error(f"{what} must be a plain topic name without the wildcards + and #, e.g. mqtt://broker/line1/decisions")
    return topic


def _env_file(uri: str, name: str) -> str | None:
    value = os.environ.get(name)
    if value and not Path(value).is_file():
        raise uri_error("sink", uri, f"{name}={value} is not a file")
    return value or None


class MqttSink(Sink):
    """Publishes each decision's JSON to `topic`, with an online/offline status topic."""

    def __init__(
        self,
        uri: str,
        host: str,
        port: int,
        topic: str,
        *,
        qos: int = 1,
        retain: bool = False,
        client_id: str = "",
        status_topic: str | None = None,
        tls: bool = False,
        options: SinkOptions | None = None,
    ) -> None:
        super().__init__(uri, options)
        self.host, self.port, self.topic, self.qos, self.retain = host, port, topic, qos, retain
        self.status_topic = status_topic or f"{topic}/status"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        user, password = os.environ.get("EDGEFREQ_MQTT_USERNAME"), os.environ.get("EDGEFREQ_MQTT_PASSWORD")
        if password and not user:
            raise uri_error("sink", uri, "EDGEFREQ_MQTT_PASSWORD is set but EDGEFREQ_MQTT_USERNAME is not")
        if user:
            client.username_pw_set(user, password)
        if tls:
            ca, cert, key = (_env_file(uri, f"EDGEFREQ_MQTT_{n}") for n in ("CA", "CERT", "KEY"))
            if bool(cert) != bool(key):
                raise uri_error("sink", uri, "set both EDGEFREQ_MQTT_CERT and EDGEFREQ_MQTT_KEY for a client certificate, or neither")
            try:
                client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
            except (ssl.SSLError, OSError) as exc:
                raise uri_error("sink", uri, f"cannot load the TLS files from EDGEFREQ_MQTT_CA/CERT/KEY ({exc})") from None
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.max_queued_messages_set(self.options.queue)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._refused: str | None = None
        client.connect_async(host, port, keepalive=KEEPALIVE_S)
        client.loop_start()

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> MqttSink:
        uri.no_credentials("EDGEFREQ_MQTT_USERNAME and EDGEFREQ_MQTT_PASSWORD")
        if not uri.parts.hostname:
            raise uri.error("needs a broker host: mqtt://HOST[:PORT]/TOPIC")
        tls = uri.scheme == "mqtts"
        opts = uri.options(("qos", "retain", "client_id", "status"))
        return cls(
            uri.text,
            uri.parts.hostname,
            uri.port(8883 if tls else 1883),
            _topic(uri, unquote(uri.parts.path.lstrip("/")), "the path (the topic)"),
            qos=int(uri.number("qos", opts.get("qos", "1"), int, 0, 2)),
            retain=uri.flag("retain", opts.get("retain", "0")),
            client_id=opts.get("client_id", ""),
            status_topic=_topic(uri, opts["status"], "status") if "status" in opts else None,
            tls=tls,
            options=options,
        )

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            if self._refused != str(reason):
                log.warning("sink %s: broker refused the connection (%s); check EDGEFREQ_MQTT_USERNAME/PASSWORD", self.name, reason)
            self._refused = str(reason)
            return
        self._refused = None
        log.info("sink %s: connected", self.name)
        client.publish(self.status_topic, "online", qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        log.warning("sink %s: disconnected (%s); keeping the newest %d decisions queued until the broker is back",
                    self.name, reason, self.options.queue)

    def _deliver(self, item: Item) -> None:
        while not self._client.is_connected():  # an outage: wait for paho's reconnect, keep the retries
            if self._refused:
                raise ConnectionError(self._refused)
            if self._abort.wait(WAIT_STEP_S):
                raise ConnectionError(f"not connected to {self.host}:{self.port} when the sink closed")
        info = self._client.publish(self.topic, item.decision.to_json(), qos=self.qos, retain=self.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(mqtt.error_string(info.rc))
        info.wait_for_publish(timeout=self.options.timeout_s)
        if not info.is_published():
            raise TimeoutError(f"no acknowledgement within {self.options.timeout_s} s")

    def _release(self) -> None:
        if self._client.is_connected():
            info = self._client.publish(self.status_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=self.options.timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("sink %s: could not publish offline status (%s)", self.name, exc)
        self._client.disconnect()
        self._client.loop_stop()

