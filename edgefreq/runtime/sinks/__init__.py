"""Where decisions go: one URI grammar for every output (see `uri`), one `Sink` interface.

Every sink takes the same `SinkOptions` (queue size, retries, backoff, timeout) and behaves the
same way: `submit()` never blocks, delivery happens on the sink's own thread (see base.py).
"""

from edgefreq.runtime.sinks.base import Item, PermanentError, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.sinks.uri import GRAMMAR, open_sink

__all__ = ["GRAMMAR", "Item", "PermanentError", "Sink", "SinkOptions", "open_sink"]
