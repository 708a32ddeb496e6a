"""JSON lines file sink: appends, one valid record per line, survives reopening, never truncates."""

from __future__ import annotations

import json

import pytest
from conftest import wait_until

from edgefreq.errors import UserError
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks import open_sink


def read_records(path) -> list[Decision]:
    return [Decision.from_json(line, f"{path} line {n}") for n, line in enumerate(path.read_text().splitlines(), 1)]


def test_appends_across_reopen_and_never_truncates(tmp_path, make_decision):
    path = tmp_path / "logs" / "decisions.jsonl"  # the folder is created
    for uri in (f"file://{path}", str(path)):
        sink = open_sink(uri)
        for i in range(3):
            sink.submit(make_decision(i, "NOK" if i == 1 else "OK"))
        assert sink.close(timeout=5)["sent"] == 3
    records = read_records(path)
    assert [r.frame_id for r in records] == [0, 1, 2, 0, 1, 2]
    assert [r.verdict for r in records[:3]] == ["OK", "NOK", "OK"]


def test_each_line_is_flushed_before_close(tmp_path, make_decision):
    path = tmp_path / "live.jsonl"
    sink = open_sink(str(path))
    sink.submit(make_decision(5))
    assert wait_until(lambda: path.read_text().endswith("\n")), "the line did not reach the file while the sink was open"
    assert json.loads(path.read_text())["frame_id"] == 5
    sink.close(timeout=5)


def test_a_cut_last_line_is_kept_and_new_lines_start_clean(tmp_path, make_decision):
    path = tmp_path / "crashed.jsonl"
    old = make_decision(1).to_json()
    path.write_text(old + "\n" + old[:25])  # power loss in the middle of a line
    sink = open_sink(f"file://{path}")
    sink.submit(make_decision(2))
    sink.close(timeout=5)
    lines = path.read_text().splitlines()
    assert lines[0] == old and lines[1] == old[:25]  # nothing existing is lost
    assert Decision.from_json(lines[2]).frame_id == 2


def test_unwritable_path_is_a_user_error(tmp_path):
    folder = tmp_path / "a.jsonl"
    folder.mkdir()
    with pytest.raises(UserError, match="is a folder"):
        open_sink(str(folder))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot append"):
        open_sink(f"file://{blocker}/sub/out.jsonl")


def test_a_disk_that_fills_then_frees_leaves_each_record_once_and_whole(tmp_path, make_decision, monkeypatch):
    import errno
    import os

    from edgefreq.runtime.sinks import SinkOptions

    real_write, full = os.write, {"writes": 0}

    def write(fd, data):  # the disk is full for a while: half a line gets written, then ENOSPC
        if full["writes"] < 4 and len(data) > 8:
            full["writes"] += 1
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    path = tmp_path / "d.jsonl"
    sink = open_sink(str(path), SinkOptions(retries=10, backoff_s=0.01, backoff_max_s=0.02))
    monkeypatch.setattr(os, "write", write)
    for i in range(30):
        sink.submit(make_decision(i))
    report = sink.close(timeout=10)
    monkeypatch.undo()
    assert full["writes"] == 4 and report["sent"] == 30 and report["retries"] == 4
    assert [r.frame_id for r in read_records(path)] == list(range(30))
