"""Options every sink takes, whatever its URI (the output side of sources/options.py)."""

from __future__ import annotations

from dataclasses import dataclass

from edgefreq.runtime.uri import bounded, check_options, check_order


@dataclass
class SinkOptions:
    """How a sink queues and retries; checked like SourceOptions (edgefreq/runtime/uri.py).

    queue: decisions waiting per sink; when full the oldest is dropped.
    queue_mb: images waiting per sink (sinks that keep them), 10^6 bytes; the oldest dropped beyond.
    retries: extra attempts after a failed delivery.
    backoff_s, backoff_max_s: wait before the first retry, doubling after each up to the max.
    timeout_s: network sinks' HTTP request timeout and MQTT acknowledgement wait.
    """

    queue: int = bounded(256, low=1)
    queue_mb: float = bounded(256.0, low=0, above=True)
    retries: int = bounded(5, low=0)
    backoff_s: float = bounded(0.2, low=0)
    backoff_max_s: float = 5.0
    timeout_s: float = bounded(2.0, low=0, above=True)

    def __post_init__(self) -> None:
        check_options("sink", self)
        check_order("sink", self, "backoff_s", "backoff_max_s")
