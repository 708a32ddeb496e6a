"""The one URI grammar of the line's inputs (sources) and outputs (sinks), after jetson-utils'
videoSource / videoOutput:

    scheme://location?key=value&key=value

- `scheme` picks the opener in the package's table, `SCHEMES` in sources/uri.py and sinks/uri.py
  (scheme -> "module:opener", imported only when a URI needs it, so an output's Python package is
  needed only when it is used). An opener takes the parsed `Uri` and the package's options.
- `location` is what the scheme names: a device (0, /dev/video0), host[:port][/path], or a path
  (file:///absolute/path, file://relative/path).
- `?key=value` options: an opener names the keys it takes; an unknown or repeated key, or a value
  that does not parse or is out of range, is an error saying which. Network URLs (rtsp://,
  http[s]://) go to their server whole, query included.
- A shorthand without "://" is expanded by its package: a path (file://), a camera index
  (camera://), `-` (stdout://).
- '#' is not part of the grammar: no input or output takes a fragment (write %23).
- Every problem is one line, `source 'URI': problem` or `sink 'URI': problem`, password as ***.

The options every input or every output takes (SourceOptions, SinkOptions) come from the command
line or the run config, not the URI; `check_options` checks both the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from edgefreq.errors import UserError


def redact(text: str) -> str:
    """The URI with any password replaced by ***, safe for logs, errors and decision records."""
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return text
    if password is None:
        return text
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"))


def uri_error(kind: str, text: str, problem: str) -> UserError:
    """The one wording of every URI problem: `source 'URI': problem` / `sink 'URI': problem`."""
    return UserError(f"{kind} {redact(text)!r}: {problem}")


@dataclass(frozen=True)
class Uri:
    """A parsed input or output URI: `text` as the user wrote it, `parts` of its expanded form."""

    kind: str  # "source" or "sink"
    text: str
    parts: SplitResult

    @property
    def scheme(self) -> str:
        return self.parts.scheme

    @property
    def location(self) -> str:
        """What comes between '://' and '?', percent-decoded."""
        return unquote(self.parts.netloc + self.parts.path)

    def error(self, problem: str) -> UserError:
        return uri_error(self.kind, self.text, problem)

    def path(self, example: str) -> Path:
        """The location as a file or folder path (absolute with a third slash, else relative)."""
        if not self.location:
            raise self.error(f"no path given; write {example}")
        return Path(self.location).expanduser()

    def options(self, known: Iterable[str]) -> dict[str, str]:
        """The ?key=value options; an unknown or repeated key is an error that lists the known ones."""
        known = tuple(known)
        values: dict[str, str] = {}
        for key, value in parse_qsl(self.parts.query, keep_blank_values=True):
            if key not in known:
                raise self.error(f"unknown option {key!r} (options here: {', '.join(known) or 'none'})")
            if key in values:
                raise self.error(f"option {key!r} given twice")
            values[key] = value
        return values

    def number(self, key: str, value: str, kind: type[int] | type[float], low: float, high: float) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise self.error(f"option {key}={value!r} must be {'an integer' if kind is int else 'a number'}") from None
        if not low <= number <= high:
            raise self.error(f"option {key}={value!r} must be between {low:g} and {high:g}")
        return number

    def flag(self, key: str, value: str) -> bool:
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on", ""):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise self.error(f"option {key}={value!r} must be 0 or 1")

    def port(self, default: int) -> int:
        try:
            number = self.parts.port
        except ValueError:
            number = 0
        if number == 0:
            raise self.error("the port must be a number from 1 to 65535")
        return default if number is None else number

    def no_credentials(self, env: str) -> None:
        """Secrets in a URI end up in logs and records; where the environment can carry them, it must."""
        if self.parts.username is not None or self.parts.password is not None:
            raise self.error(f"put credentials in {env}, not in the URI")


@dataclass(frozen=True)
class Schemes:
    """One package's URIs: scheme -> "module:opener" (in `package`), its shorthands, its usage line.

    `shorthand(text)` gives the parts of a URI written without "://" (None: not one it knows);
    `packages` maps a missing Python module to what to install.
    """

    kind: str
    package: str
    table: Mapping[str, str]
    usage: str
    shorthand: Callable[[str], SplitResult | None]
    packages: Mapping[str, str] = field(default_factory=dict)

    def parse(self, text: str) -> Uri:
        text = text.strip()
        if not text:
            raise UserError(f"empty {self.kind} URI; use one of: {self.usage}")
        parts = self.shorthand(text) if "://" not in text else None
        if parts is None:
            try:
                parts = urlsplit(text)
            except ValueError as exc:
                raise uri_error(self.kind, text, f"not a URI ({exc})") from None
            parts = parts._replace(scheme=parts.scheme.lower())
            if "#" in text:
                raise uri_error(self.kind, text, "'#' is not allowed (it starts a URI fragment, and is an MQTT wildcard); write %23")
        uri = Uri(self.kind, text, parts)
        if uri.scheme not in self.table:
            raise uri.error(f"unknown kind of {'input' if self.kind == 'source' else 'output'}; use one of: {self.usage}")
        return uri

    def open(self, text: str, options: Any) -> Any:
        """Parse `text` and hand it to its scheme's opener."""
        uri = self.parse(text)
        module_name, _, name = self.table[uri.scheme].partition(":")
        try:
            opener: Any = importlib.import_module(f"{self.package}.{module_name}")
        except ImportError as exc:
            package = self.packages.get((exc.name or "").split(".")[0])
            if package is None:
                raise
            raise uri.error(f"needs the Python package {package}") from None
        for attribute in name.split("."):
            opener = getattr(opener, attribute)
        return opener(uri, options)


def bounded(default: float, low: float, above: bool = False) -> Any:
    """A dataclass field checked by `check_options`: >= low, or > low with `above`."""
    return field(default=default, metadata={"low": low, "above": above})


def check_options(kind: str, options: object) -> None:
    """Every bounded field of a SourceOptions or SinkOptions in range, or one line naming it."""
    for f in fields(options):  # type: ignore[arg-type]
        if "low" not in f.metadata:
            continue
        value, low, above = getattr(options, f.name), f.metadata["low"], f.metadata["above"]
        if value < low or (above and value == low):
            raise UserError(f"{kind} option {f.name} must be {'>' if above else '>='} {low:g}, got {value}")


def check_order(kind: str, options: object, low: str, high: str) -> None:
    """`low` <= `high` for two fields of an options object, or one line naming both."""
    if getattr(options, low) > getattr(options, high):
        raise UserError(f"{kind} options need {low} <= {high}, got {getattr(options, low)} and {getattr(options, high)}")
