"""JSON lines: `-` / `stdout://` (standard output) and `file://PATH` (or a bare `*.jsonl` path).

One decision per line, flushed after each line. A file is only ever appended to: an existing
file keeps its content, and if its last line was cut short (power loss mid-write) a newline is
added first, so every line written from now on parses on its own. A line is written with plain
os.write calls (no buffer that could hold half a line for the next attempt); when a write fails
part-way (a full disk), the file is cut back to where the line began before the error goes to the
retry, so a retried decision is written once, whole.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from edgefreq.runtime.sinks.base import Item, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.uri import Uri, uri_error


class StdoutSink(Sink):
    """Decisions as JSON lines on standard output (for piping into other tools)."""

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> StdoutSink:
        if uri.parts.netloc or uri.parts.path:
            raise uri.error("stdout takes no host or path: write '-' or 'stdout://'")
        uri.options(())
        return cls("stdout://", options)

    def _deliver(self, item: Item) -> None:
        out: TextIO = sys.stdout  # looked up per line, so a redirected sys.stdout is honoured
        out.write(item.decision.to_json() + "\n")
        out.flush()


class JsonlFileSink(Sink):
    """Decisions appended to a JSON lines file, one flushed line each."""

    def __init__(self, path: Path, options: SinkOptions | None = None, uri: str | None = None) -> None:
        super().__init__(uri or f"file://{path}", options)
        self.path = path
        where = uri or str(path)
        if path.is_dir():
            raise uri_error("sink", where, f"{path} is a folder; give a file name ending .jsonl")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if needs_newline:
                self._append(b"\n")
        except OSError as exc:
            raise uri_error("sink", where, f"cannot append to {path} ({exc.strerror}); check the folder exists and is writable") from None

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> JsonlFileSink:
        uri.options(())
        return cls(uri.path("file:///var/log/line.jsonl, file://line.jsonl or just line.jsonl"), options, uri.text)

    def _deliver(self, item: Item) -> None:
        self._append((item.decision.to_json() + "\n").encode())

    def _append(self, data: bytes) -> None:
        """All of `data` at the end of the file, or the file as it was and the error raised."""
        start = os.fstat(self._fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            os.ftruncate(self._fd, start)  # no half line left for the retry to follow
            raise

    def _release(self) -> None:
        os.close(self._fd)


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1)
