"""Where decisions go: one URI grammar for every output (like jetson-utils' videoOutput).

    -  or  stdout://                      JSON lines on standard output
    file:///path/out.jsonl  or  out.jsonl  JSON lines appended to a file
    mqtt://host[:1883]/topic[?qos=1&retain=0&client_id=ID&status=TOPIC]   (mqtts:// for TLS, port 8883)
    modbus://[host][:port]                 Modbus TCP server for a PLC (default 127.0.0.1:5020)
    opcua://[host][:port]                  OPC UA server, OPC 40100 reduced (default 127.0.0.1:4840)
    http://...  https://...                webhook: POST each record
    nokdir:///folder[?max_mb=200]          NOK frames + heatmaps + records, size-capped

Every sink takes the same `SinkOptions` (queue size, retries, backoff, timeout) and behaves the
same way: `submit()` never blocks, delivery happens on the sink's own thread (see base.py).
A sink's Python packages (paho-mqtt, pymodbus, asyncua, requests: the `line` extra) are imported only
when a URI needs them.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from edgefreq.errors import UserError
from edgefreq.runtime.sinks.base import Item, PermanentError, Sink, SinkOptions
from edgefreq.runtime.sinks.uri import bad

__all__ = ["GRAMMAR", "Item", "PermanentError", "Sink", "SinkOptions", "open_sink"]

GRAMMAR = (
    "-, stdout://, file:///path/out.jsonl (or a path ending .jsonl), mqtt[s]://HOST[:PORT]/TOPIC, "
    "modbus://[HOST][:PORT], opcua://[HOST][:PORT], http[s]://URL, nokdir:///FOLDER"
)

# scheme -> (module in this package, class)
_SINKS: dict[str, tuple[str, str]] = {
    "stdout": ("jsonl", "StdoutSink"),
    "file": ("jsonl", "JsonlFileSink"),
    "mqtt": ("mqtt", "MqttSink"),
    "mqtts": ("mqtt", "MqttSink"),
    "modbus": ("modbus", "ModbusSink"),
    "opcua": ("opcua", "OpcUaSink"),
    "http": ("webhook", "WebhookSink"),
    "https": ("webhook", "WebhookSink"),
    "nokdir": ("nokdir", "NokDirSink"),
}
_PACKAGES = {"paho": "paho-mqtt", "pymodbus": "pymodbus>=3.13", "asyncua": "asyncua>=1.1", "requests": "requests"}


def open_sink(uri: str, options: SinkOptions | None = None) -> Sink:
    """Open the sink a URI names and start its worker thread.

    A malformed URI, an unknown scheme, a missing package, an unwritable path or a busy port is
    a one-line UserError. A network peer being down is not: network sinks connect in the
    background and retry, so a line can start before its broker or webhook does.
    """
    text = uri.strip()
    if not text:
        raise UserError(f"empty sink URI; use one of: {GRAMMAR}")
    options = options or SinkOptions()
    parts = urlsplit("stdout://" if text == "-" else text)
    scheme = parts.scheme.lower()
    if scheme == "" and parts.path.endswith(".jsonl"):
        scheme = "file"
    if scheme not in _SINKS:
        raise bad(text, f"unknown kind of output; use one of: {GRAMMAR}")
    if "#" in text and scheme not in ("http", "https"):
        raise bad(text, "'#' is not allowed here (it starts a URI fragment, and is an MQTT wildcard)")
    module_name, class_name = _SINKS[scheme]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as exc:
        package = _PACKAGES.get((exc.name or "").split(".")[0])
        if package is None:
            raise
        raise bad(text, f"needs the Python package {package}: pip install 'edgefreq[line]'") from None
    return getattr(module, class_name).from_uri(text, parts, options).start()
