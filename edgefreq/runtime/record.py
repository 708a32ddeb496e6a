"""The decision record: exactly one per processed frame, the one thing every sink delivers.

A `Decision` is written as one line of JSON (`to_json`), read back with `Decision.from_json`,
and described by `DECISION_SCHEMA` (JSON Schema, draft 2020-12). `from_dict` checks a record
against that schema with the small validator below (the subset of JSON Schema the schema uses),
so reading records needs no extra package. docs/decision-record.md documents every field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgefreq.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from edgefreq.runtime.frame import Frame

SCHEMA = "edgefreq.decision/3"
# /1 records have no threshold_source; /1 and /2 no part_id, trigger_ts, reason, latency_ms.trigger
READABLE_SCHEMAS = ("edgefreq.decision/1", "edgefreq.decision/2", SCHEMA)
VERDICTS = ("OK", "NOK")
THRESHOLD_SOURCES = ("calibration", "override")
# "trigger": from the part's trigger to the verdict; free-running (no trigger) it is `total`
LATENCY_STAGES = ("capture", "preprocess", "infer", "decide", "total", "trigger")
REQUIRED_STAGES = LATENCY_STAGES[:5]  # what every readable version has
ENGINE_HASH_CHARS = 12

_NUMBER = {"type": "number", "minimum": 0}

DECISION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": f"edgefreq decision record ({SCHEMA})",
    "type": "object",
    "required": [
        "schema", "frame_id", "capture_ts", "decided_ts", "source", "score", "score_norm",
        "threshold", "verdict", "latency_ms", "dropped", "engine",
    ],
    "additionalProperties": False,
    "properties": {
        "schema": {"enum": list(READABLE_SCHEMAS)},
        "frame_id": {"type": ["integer", "null"], "minimum": 0},
        "capture_ts": _NUMBER,
        "decided_ts": _NUMBER,
        "source": {"type": "string"},
        "score": {"type": ["number", "null"]},
        "score_norm": {"type": ["number", "null"]},
        "threshold": {"type": "number"},
        "threshold_source": {"enum": list(THRESHOLD_SOURCES)},
        "verdict": {"enum": list(VERDICTS)},
        "latency_ms": {
            "type": "object",
            "required": list(REQUIRED_STAGES),
            "additionalProperties": False,
            "properties": {stage: _NUMBER for stage in LATENCY_STAGES},
        },
        "dropped": {"type": "integer", "minimum": 0},
        "engine": {"type": "string", "minLength": 1},
        "truth": {"enum": [0, 1, None]},
        "part_id": {"type": ["string", "null"]},
        "trigger_ts": {"type": ["number", "null"], "minimum": 0},
        "reason": {"type": ["string", "null"]},
    },
}


def engine_id(name: str, sha256: str) -> str:
    """The `engine` field: the engine file's name and the first 12 hex digits of its sha256."""
    digest = sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{%d,64}" % ENGINE_HASH_CHARS, digest):
        raise ValueError(f"engine sha256 must be hex digits, got {sha256!r}")
    return f"{name}@{digest[:ENGINE_HASH_CHARS]}"


@dataclass(frozen=True)
class Decision:
    """One processed frame: what was seen, what was decided, how long it took.

    `score` is the engine's raw score, `threshold` is in the same raw units (NOK when
    score > threshold); `threshold_source` says where it came from: "calibration" (the engine's
    sidecar) or "override" (`edgefreq run --threshold X`); `score_norm` is the score scaled by the
    calibration's normal range (the calibrated threshold is 1, whatever the override).
    `dropped` counts the frames the capture ring buffer dropped so far (never processed, so
    they have no record). `truth` is the label when known (0 good, 1 defect), else None.
    `part_id` and `trigger_ts` (Unix time) come with a part trigger (PLC, HTTP, OPC UA), else None;
    `frame_id` is None for a triggered part no frame came for (then `capture_ts` is the trigger
    time). `reason` says why a NOK part was not inspected (None when it was). A `latency_ms`
    without "trigger" gets it as `total` (free-running: the frame is its own trigger).
    """

    frame_id: int | None
    capture_ts: float
    decided_ts: float
    source: str
    score: float
    score_norm: float
    threshold: float
    verdict: str
    latency_ms: Mapping[str, float]
    dropped: int
    engine: str
    truth: int | None = None
    threshold_source: str = "calibration"
    part_id: str | None = None
    trigger_ts: float | None = None
    reason: str | None = None
    schema: str = field(default=SCHEMA, init=False)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.threshold_source not in THRESHOLD_SOURCES:
            raise ValueError(f"threshold_source must be one of {THRESHOLD_SOURCES}, got {self.threshold_source!r}")
        missing = [s for s in REQUIRED_STAGES if s not in self.latency_ms]
        if missing:
            raise ValueError(f"latency_ms lacks {missing} (needs {REQUIRED_STAGES})")
        if "trigger" not in self.latency_ms:
            object.__setattr__(self, "latency_ms", {**self.latency_ms, "trigger": self.latency_ms["total"]})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data in schema order; a non-finite score becomes null, latencies keep 3 decimals."""
        return {
            "schema": self.schema,
            "frame_id": None if self.frame_id is None else int(self.frame_id),
            "capture_ts": float(self.capture_ts),
            "decided_ts": float(self.decided_ts),
            "source": self.source,
            "score": _finite_or_none(self.score),
            "score_norm": _finite_or_none(self.score_norm),
            "threshold": float(self.threshold),
            "threshold_source": self.threshold_source,
            "verdict": self.verdict,
            "latency_ms": {s: round(float(self.latency_ms[s]), 3) for s in LATENCY_STAGES},
            "dropped": int(self.dropped),
            "engine": self.engine,
            "truth": None if self.truth is None else int(self.truth),
            "part_id": self.part_id,
            "trigger_ts": None if self.trigger_ts is None else float(self.trigger_ts),
            "reason": self.reason,
        }

    def to_json(self) -> str:
        """One line of compact JSON (no newline inside, none at the end)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any, where: str = "decision record") -> Decision:
        """A record checked against DECISION_SCHEMA; a mismatch is a UserError naming the field."""
        problem = schema_problem(data, DECISION_SCHEMA)
        if problem:
            raise UserError(f"{where}: {problem}")
        score, score_norm = data["score"], data["score_norm"]
        return cls(
            frame_id=None if data["frame_id"] is None else int(data["frame_id"]),
            capture_ts=float(data["capture_ts"]),
            decided_ts=float(data["decided_ts"]),
            source=data["source"],
            score=math.nan if score is None else float(score),
            score_norm=math.nan if score_norm is None else float(score_norm),
            threshold=float(data["threshold"]),
            verdict=data["verdict"],
            latency_ms={s: float(v) for s, v in data["latency_ms"].items()},
            dropped=int(data["dropped"]),
            engine=data["engine"],
            truth=data.get("truth"),
            threshold_source=data.get("threshold_source", "calibration"),
            part_id=data.get("part_id"),
            trigger_ts=data.get("trigger_ts"),
            reason=data.get("reason"),
        )

    @classmethod
    def from_json(cls, line: str, where: str = "decision record") -> Decision:
        """Parse one JSON line (as written by `to_json`)."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        return cls.from_dict(data, where)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


def _show(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true and 1 differ."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def schema_problem(value: Any, schema: Mapping[str, Any], path: str = "") -> str | None:
    """The first way `value` breaks `schema`, as one phrase, or None when it conforms.

    Understands the keywords DECISION_SCHEMA uses: type, const, enum, minimum, minLength,
    required, properties, additionalProperties (false).
    """
    name = path or "the record"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return f"{name} must be {' or '.join(types)}, got {_show(value)}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"{name} must be {_show(schema['const'])}, got {_show(value)}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        return f"{name} must be one of {_show(schema['enum'])}, got {_show(value)}"
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        return f"{name} must be >= {schema['minimum']}, got {value}"
    if "minLength" in schema and isinstance(value, str) and len(value) < schema["minLength"]:
        return f"{name} must not be empty"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"missing field {(path + '.' if path else '') + key!r}"
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(properties))
            if extra:
                return f"unknown field {(path + '.' if path else '') + extra[0]!r}"
        for key, sub in properties.items():
            if key in value:
                problem = schema_problem(value[key], sub, f"{path}.{key}" if path else key)
                if problem:
                    return problem
    return None


@dataclass
class Inspection:
    """One part as the line hands it on (sinks, the page, the display): its decision, its frame,
    the anomaly map and the view it covers (the ROI the model saw, in the reference pose when the
    engine registers; None: no image), and why it was not inspected (error) if it was not."""

    decision: Decision
    frame: Frame
    amap: np.ndarray | None
    view: np.ndarray | None
    error: str | None = None
