"""NOK archive: only NOK decisions write files; PNG frame + heatmap overlay + record; size cap."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgefreq.errors import UserError
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks import open_sink
from edgefreq.runtime.sinks.nokdir import heatmap_overlay, record_stem


def frame_and_map(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    amap = np.zeros((1, 1, 24, 32), np.float32)
    amap[0, 0, 4:10, 20:28] = 5.0  # one hot spot, top right
    return frame, amap


def test_only_nok_writes_frame_heatmap_and_record(tmp_path, make_decision):
    sink = open_sink(f"nokdir://{tmp_path}/nok?max_mb=5")
    frame, amap = frame_and_map()
    sink.submit(make_decision(1, "OK"), frame, amap)
    nok = make_decision(2, "NOK")
    sink.submit(nok, frame, amap)
    frame[:] = 0  # the caller reuses its buffer at once: the sink kept a copy
    report = sink.close(timeout=5)
    assert report["sent"] == 1 and report["failed"] == 0
    stem = record_stem(nok)
    assert sorted(p.name for p in (tmp_path / "nok").iterdir()) == [f"{stem}.json", f"{stem}.png", f"{stem}_heatmap.png"]
    assert Decision.from_json((tmp_path / "nok" / f"{stem}.json").read_text()) == nok
    saved = cv2.imread(str(tmp_path / "nok" / f"{stem}.png"))
    assert np.array_equal(saved, frame_and_map()[0])  # lossless, the frame as submitted
    overlay = cv2.imread(str(tmp_path / "nok" / f"{stem}_heatmap.png"))
    assert overlay.shape == saved.shape


def test_heatmap_is_hot_where_the_map_is_high():
    gray = np.full((48, 64), 128, np.uint8)
    _, amap = frame_and_map()
    overlay = heatmap_overlay(gray, amap).astype(int)
    hot, cold = overlay[10, 50], overlay[40, 5]  # inside / far from the hot spot (map scaled x2)
    assert hot[2] > hot[0] and cold[0] > cold[2]  # JET: red where high, blue where low (BGR order)


def test_cap_removes_oldest_records_first(tmp_path, make_decision):
    folder = tmp_path / "nok"
    frame, amap = frame_and_map()
    record_bytes = len(make_decision(0, "NOK").to_json()) + 1
    max_mb = 2.5 * record_bytes / 1e6  # room for two records (without images)
    sink = open_sink(f"nokdir://{folder}?max_mb={max_mb}")
    for i in range(6):
        sink.submit(make_decision(i, "NOK"))
    sink.close(timeout=5)
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == [f"{record_stem(make_decision(i, 'NOK'))}.json" for i in (4, 5)]

    (folder / "notes.txt").write_text("not ours: never counted or removed")
    sink = open_sink(f"nokdir://{folder}?max_mb={max_mb}")  # reopened: existing records count
    sink.submit(make_decision(9, "NOK"), frame, amap)  # bigger than the cap alone: kept, the rest go
    sink.close(timeout=5)
    stem = record_stem(make_decision(9, "NOK"))
    assert sorted(p.name for p in folder.iterdir()) == [f"{stem}.json", f"{stem}.png", f"{stem}_heatmap.png", "notes.txt"]


def test_bad_frame_fails_without_retrying(tmp_path, make_decision):
    sink = open_sink(f"nokdir://{tmp_path}")
    sink.submit(make_decision(1, "NOK"), np.zeros((8, 8, 3), np.float32))
    report = sink.close(timeout=5)
    assert report["failed"] == 1 and report["retries"] == 0


def test_unwritable_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write into"):
        open_sink(f"nokdir://{blocker}/nok")


class FullDisk:
    """Path.write_bytes on a disk that is full while `full` is true: half the bytes land, then ENOSPC."""

    def __init__(self, monkeypatch, folder) -> None:
        import errno
        from pathlib import Path

        self.full, real = True, Path.write_bytes

        def write_bytes(path, data):
            if self.full and path.parent == folder and data:
                real(path, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, data)

        monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_a_full_disk_leaves_no_temporary_files_and_the_next_run_delivers(tmp_path, make_decision, monkeypatch):
    from edgefreq.runtime.sinks import SinkOptions

    folder = tmp_path / "nok"
    folder.mkdir()
    (folder / ".20250131T142501.123Z_00000007.png.tmp").write_bytes(b"x" * 1000)  # left by a crash: removed at start
    quick = SinkOptions(retries=1, backoff_s=0.01, backoff_max_s=0.01)
    disk = FullDisk(monkeypatch, folder)
    frame, amap = frame_and_map()
    sink = open_sink(f"nokdir://{folder}", quick)
    for i in range(5):
        sink.submit(make_decision(i, "NOK"), frame, amap)
    report = sink.close(timeout=5)
    assert report["failed"] == 5 and not list(folder.glob(".*.tmp")) and not list(folder.iterdir())
    disk.full = False  # space freed: the next run writes all of its records
    sink = open_sink(f"nokdir://{folder}", quick)
    for i in range(10, 15):
        sink.submit(make_decision(i, "NOK"), frame, amap)
    assert sink.close(timeout=5)["sent"] == 5 and len(list(folder.glob("*.json"))) == 5


def test_on_a_full_disk_the_oldest_records_make_room_for_the_newest(tmp_path, make_decision, monkeypatch):
    folder = tmp_path / "nok"
    frame, amap = frame_and_map()
    sink = open_sink(f"nokdir://{folder}")
    for i in range(3):
        sink.submit(make_decision(i, "NOK"), frame, amap)
    assert sink.close(timeout=5)["sent"] == 3
    disk = FullDisk(monkeypatch, folder)
    calls = {"n": 0}
    real_remove = type(sink)._remove_oldest

    def remove_then_free(self, keep=None):  # removing one old record frees the space
        real_remove(self, keep)
        calls["n"] += 1
        disk.full = False

    monkeypatch.setattr(type(sink), "_remove_oldest", remove_then_free)
    sink = open_sink(f"nokdir://{folder}")
    sink.submit(make_decision(9, "NOK"), frame, amap)
    assert sink.close(timeout=5)["sent"] == 1 and calls["n"] == 1
    ids = sorted(int(p.stem.split("_")[1]) for p in folder.glob("*.json"))
    assert ids == [1, 2, 9] and not list(folder.glob(".*.tmp"))


def test_a_backlog_at_exit_keeps_every_record_and_never_aborts(tmp_path):
    """Large NOK frames queued faster than PNG encoding, then close with little time: no SIGABRT
    at interpreter exit, and every queued NOK decision has its record (images or not)."""
    import subprocess
    import sys

    folder = tmp_path / "nok"
    script = f"""
import numpy as np
from edgefreq.runtime.record import Decision
from edgefreq.runtime.sinks import open_sink
sink = open_sink("nokdir://{folder}?max_mb=100000")
frame = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)  # noise: slow PNGs
lat = dict.fromkeys(("capture", "preprocess", "infer", "decide", "total"), 0.0)
for i in range(30):
    sink.submit(Decision(i, 1e9 + i, 1e9 + i, "test", 1.0, 2.0, 0.5, "NOK", lat, 0, "x@000000000000"), frame, np.ones((64, 64), np.float32))
report = sink.close(timeout=0.2)
assert report["unsent"] > 0, report  # the backlog is real
"""
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert len(list(folder.glob("*.json"))) == 30
        assert "without their images" in proc.stderr
        for p in folder.iterdir():
            p.unlink()
