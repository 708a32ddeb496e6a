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
