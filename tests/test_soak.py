"""benchmarks/soak.py judges a run: at --rate 0 a single dropped frame is a failure."""

from __future__ import annotations

from conftest import load_benchmark

from edgefreq.runtime.loop import Summary

soak = load_benchmark("soak")


def summary(frames: int, dropped: int) -> Summary:
    s = Summary(frames=frames, ok=frames, captured=frames + dropped, dropped=dropped)
    return s


def test_a_clean_run_passes():
    assert soak.problems(summary(100, 0), list(range(100)), 100, rate=0.0) == []


def test_a_drop_at_rate_0_fails_even_when_the_accounting_adds_up():
    ids = [i for i in range(100) if i != 40]  # frame 40 dropped by the ring: counted, recorded as a gap
    found = soak.problems(summary(99, 1), ids, 100, rate=0.0)
    assert any("nothing may be dropped" in p for p in found)
    assert soak.problems(summary(99, 1), ids, 100, rate=600.0) == []  # paced above what the box sustains: allowed


def test_missing_records_and_unexplained_gaps_fail():
    assert soak.problems(summary(100, 0), list(range(99)), 100, rate=600.0)
    assert soak.problems(summary(99, 0), [i for i in range(100) if i != 3], 100, rate=600.0)
