"""Small helpers shared by the sinks' URI parsers: every problem is a one-line UserError naming the URI."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import SplitResult, parse_qsl

from edgefreq.errors import UserError


def bad(uri: str, problem: str) -> UserError:
    return UserError(f"sink {uri!r}: {problem}")


def query(uri: str, parts: SplitResult, known: Iterable[str]) -> dict[str, str]:
    """The URI's ?key=value options; an unknown or repeated key is an error that lists the known ones."""
    known = tuple(known)
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in known:
            listed = ", ".join(known) if known else "none"
            raise bad(uri, f"unknown option {key!r} (options here: {listed})")
        if key in options:
            raise bad(uri, f"option {key!r} given twice")
        options[key] = value
    return options


def as_bool(uri: str, key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on", ""):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise bad(uri, f"option {key}={value!r} must be 0 or 1")


def as_number(uri: str, key: str, value: str, kind: type[int] | type[float], low: float, high: float) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        raise bad(uri, f"option {key}={value!r} must be a number") from None
    if not low <= number <= high:
        raise bad(uri, f"option {key}={value!r} must be between {low:g} and {high:g}")
    return number


def port(uri: str, parts: SplitResult, default: int) -> int:
    try:
        number = parts.port
    except ValueError:
        number = 0
    if number == 0:
        raise bad(uri, "the port must be a number from 1 to 65535")
    return default if number is None else number


def no_credentials(uri: str, parts: SplitResult, env: str) -> None:
    """Secrets in a URI end up in logs and decision sources; they come from the environment instead."""
    if parts.username is not None or parts.password is not None:
        raise bad(uri.replace(parts.netloc, parts.netloc.rpartition("@")[2]), f"put credentials in {env}, not in the URI")
