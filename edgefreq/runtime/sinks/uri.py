"""Which scheme opens which sink: the output side of the one URI grammar (edgefreq/runtime/uri.py).

    -  or  stdout://                      JSON lines on standard output                   jsonl.py
    file:///path/out.jsonl  or  out.jsonl  JSON lines appended to a file                    jsonl.py
    mqtt://host[:1883]/topic[?qos=1&retain=0&client_id=ID&status=TOPIC]   (mqtts:// TLS)    mqtt.py
    modbus://[host][:port][?results=N]     Modbus TCP server for a PLC (127.0.0.1:5020)     modbus.py
    opcua://[host][:port][?results=N&security=any|encrypt]   OPC UA server (127.0.0.1:4840) opcua.py
    http://...  https://...                webhook: POST each record                        webhook.py
    nokdir:///folder[?max_mb=200]          NOK frames + heatmaps + records, size-capped     nokdir.py
    display://  (or display://0)           a window: frame, heatmap, verdict; q/Esc stops   display.py

A sink's Python packages (paho-mqtt, pymodbus, asyncua, requests: the `line` extra) are imported
only when a URI needs them.
"""

from __future__ import annotations

from urllib.parse import SplitResult

from edgefreq.runtime.uri import Schemes

from .base import Sink
from .options import SinkOptions

GRAMMAR = (
    "-, stdout://, file://PATH.jsonl (or a path ending .jsonl), mqtt[s]://HOST[:PORT]/TOPIC, "
    "modbus://[HOST][:PORT], opcua://[HOST][:PORT], http[s]://URL, nokdir://FOLDER, display://"
)


def _shorthand(text: str) -> SplitResult | None:
    """`-` is stdout://, a path ending .jsonl a file://; anything else needs its scheme."""
    if text == "-":
        return SplitResult("stdout", "", "", "", "")
    if text.endswith(".jsonl"):
        return SplitResult("file", "", text, "", "")
    return None


SCHEMES = Schemes(
    kind="sink",
    package=__package__,
    table={  # one line a module
        "stdout": "jsonl:StdoutSink.from_uri", "file": "jsonl:JsonlFileSink.from_uri",
        "mqtt": "mqtt:MqttSink.from_uri", "mqtts": "mqtt:MqttSink.from_uri",
        "modbus": "modbus:ModbusSink.from_uri",
        "opcua": "opcua:OpcUaSink.from_uri",
        "http": "webhook:WebhookSink.from_uri", "https": "webhook:WebhookSink.from_uri",
        "nokdir": "nokdir:NokDirSink.from_uri",
        "display": "display:DisplaySink.from_uri",
    },
    usage=GRAMMAR,
    shorthand=_shorthand,
    packages={
        "paho": "paho-mqtt: pip install 'edgefreq[line]'",
        "pymodbus": "pymodbus>=3.13: pip install 'edgefreq[line]'",
        "asyncua": "asyncua>=1.1: pip install 'edgefreq[line]'",
        "requests": "requests: pip install 'edgefreq[line]'",
    },
)


def open_sink(uri: str, options: SinkOptions | None = None) -> Sink:
    """Open the sink a URI names and start its worker thread.

    A malformed URI, an unknown scheme, a missing package, an unwritable path, a busy port or a
    missing display is a one-line UserError. A network peer being down is not: network sinks
    connect in the background and retry, so a line can start before its broker or webhook does.
    """
    return SCHEMES.open(uri, SinkOptions() if options is None else options).start()
