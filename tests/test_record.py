"""The decision record: JSON round trip, the schema, and the small validator that reads records."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from edgefreq.errors import UserError
from edgefreq.runtime.record import DECISION_SCHEMA, REQUIRED_STAGES, SCHEMA, Decision, engine_id, schema_problem


def sample(**changes) -> Decision:
    fields = dict(
        frame_id=42,
        capture_ts=1738333501.123456,
        decided_ts=1738333501.140002,
        source="v4l2:///dev/video0",
        score=0.0123,
        score_norm=1.87,
        threshold=0.0101,
        verdict="NOK",
        latency_ms={"capture": 0.4, "preprocess": 1.25, "infer": 9.5, "decide": 0.05, "total": 11.2},
        dropped=3,
        engine=engine_id("bottle.plan", "3f2a9c1d0b7e" + "0" * 52),
        truth=1,
    )
    fields.update(changes)
    return Decision(**fields)


def test_round_trip_is_exact_and_one_line():
    decision = sample()
    line = decision.to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[0] == "schema" and data["schema"] == SCHEMA
    assert data["engine"] == "bottle.plan@3f2a9c1d0b7e"
    assert Decision.from_json(line) == decision
    assert Decision.from_json(line).to_json() == line


def test_unknown_truth_and_non_finite_score_are_null():
    decision = sample(truth=None, score=math.nan, score_norm=math.inf)
    data = json.loads(decision.to_json())  # strict JSON: no NaN tokens
    assert data["truth"] is None and data["score"] is None and data["score_norm"] is None
    back = Decision.from_json(decision.to_json())
    assert math.isnan(back.score) and back.truth is None


def test_schema_lists_exactly_the_dataclass_fields():
    fields = {f.name for f in dataclasses.fields(Decision)}
    assert set(DECISION_SCHEMA["properties"]) == fields
    assert set(DECISION_SCHEMA["required"]) == fields - {"truth", "threshold_source", "part_id", "trigger_ts", "reason"}
    assert DECISION_SCHEMA["properties"]["latency_ms"]["required"] == list(REQUIRED_STAGES)


BAD_RECORDS = {
    "missing field": lambda d: d.pop("verdict"),
    "unknown field": lambda d: d.update(extra=1),
    "verdict": lambda d: d.update(verdict="MAYBE"),
    "schema version": lambda d: d.update(schema="edgefreq.decision/4"),
    "numeric part id": lambda d: d.update(part_id=4711),
    "negative trigger time": lambda d: d.update(trigger_ts=-1.0),
    "threshold source": lambda d: d.update(threshold_source="guess"),
    "negative frame": lambda d: d.update(frame_id=-1),
    "float frame": lambda d: d.update(frame_id=1.5),
    "bool dropped": lambda d: d.update(dropped=True),
    "string score": lambda d: d.update(score="0.5"),
    "latency stage": lambda d: d["latency_ms"].pop("infer"),
    "truth 2": lambda d: d.update(truth=2),
    "truth true": lambda d: d.update(truth=True),
    "empty engine": lambda d: d.update(engine=""),
}


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_bad_records_are_one_line_user_errors(name):
    data = sample().to_dict()
    BAD_RECORDS[name](data)
    with pytest.raises(UserError) as info:
        Decision.from_json(json.dumps(data), where="decisions.jsonl line 7")
    message = str(info.value)
    assert message.startswith("decisions.jsonl line 7: ") and "\n" not in message


def test_a_version_1_record_still_reads():
    data = sample().to_dict()
    del data["threshold_source"]
    data["schema"] = "edgefreq.decision/1"
    assert Decision.from_dict(data).threshold_source == "calibration"
    assert sample(threshold_source="override").to_dict()["threshold_source"] == "override"


def test_a_version_2_record_still_reads_and_its_trigger_latency_is_its_total():
    data = sample().to_dict()
    for key in ("part_id", "trigger_ts", "reason"):
        del data[key]
    del data["latency_ms"]["trigger"]
    data["schema"] = "edgefreq.decision/2"
    back = Decision.from_dict(data)
    assert back.part_id is None and back.trigger_ts is None and back.latency_ms["trigger"] == data["latency_ms"]["total"]


def test_a_triggered_part_round_trips_with_its_id_time_and_reason():
    part = sample(part_id="4711", trigger_ts=1738333501.1, latency_ms={**sample().latency_ms, "trigger": 23.5})
    data = json.loads(part.to_json())
    assert data["part_id"] == "4711" and data["trigger_ts"] == 1738333501.1 and data["latency_ms"]["trigger"] == 23.5
    assert Decision.from_json(part.to_json()) == part
    missed = sample(frame_id=None, score=math.nan, part_id="4712", reason="no frame within 1 s of the trigger")
    back = Decision.from_json(missed.to_json())
    assert back.frame_id is None and back.reason == missed.reason and back.verdict == "NOK"


def test_not_json_is_a_user_error():
    with pytest.raises(UserError, match="not valid JSON"):
        Decision.from_json('{"schema": ')


def test_our_validator_agrees_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")  # a test-time cross-check only, not a dependency
    validator = jsonschema.Draft202012Validator(DECISION_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(DECISION_SCHEMA)
    good = [sample().to_dict(), sample(truth=None, score=math.nan).to_dict()]
    for data in good:
        assert validator.is_valid(data) and schema_problem(data, DECISION_SCHEMA) is None
    for name, change in BAD_RECORDS.items():
        data = sample().to_dict()
        change(data)
        assert not validator.is_valid(data), name
        assert schema_problem(data, DECISION_SCHEMA) is not None, name


def test_constructor_rejects_a_wrong_verdict_or_missing_latency():
    with pytest.raises(ValueError, match="verdict"):
        sample(verdict="ok")
    with pytest.raises(ValueError, match="latency_ms"):
        sample(latency_ms={"total": 1.0})
    with pytest.raises(ValueError, match="hex"):
        engine_id("bottle.plan", "not-a-hash")
