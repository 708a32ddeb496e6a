"""benchmarks/gpu.py's runner on the CPU: every step isolated, results written after each one.

The GPU steps themselves are rehearsed with `python benchmarks/gpu.py --rehearse` (minutes on 2
cores, not a test); here the runner's promises are checked with stand-in steps: a step that
fails, one that hangs past its limit, and one after them that still runs and is recorded.
"""

from __future__ import annotations

import json
import sys

from conftest import load_benchmark

gpu = load_benchmark("gpu")


def test_a_failing_or_hanging_step_costs_only_itself(tmp_path, monkeypatch, capsys):
    py = sys.executable
    results = tmp_path / "gpu-nvidia-h200.json"
    plan = [
        ("fails", 30, [py, "-c", "import sys; print('half done'); sys.exit(3)"], []),
        ("hangs", 1, [py, "-c", "import time; print('started', flush=True); time.sleep(60)"], []),
        ("works", 30, [py, "-c", f"import json, time; time.sleep(1.5); print('RESULT:', len(json.load(open({str(results)!r}))['steps']), 'steps on file')"], []),
        ("late", 30, [py, "-c", "print('never')"], []),  # under 10 s of the budget left: not started
    ]
    monkeypatch.setattr(gpu, "steps", lambda out, work: plan)
    monkeypatch.setattr(gpu, "gpu_name", lambda: "NVIDIA H200")
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--out", str(tmp_path), "--budget", "11.5"])
    assert gpu.main() == 1  # not every step ok
    data = json.loads(results.read_text())
    status = {s["step"]: (s["status"], s["summary"]) for s in data["steps"]}
    assert status["fails"] == ("failed (exit 3)", "half done")
    assert status["hangs"][0] == "timed out after 1 s" and status["hangs"][1] == "started"
    assert status["works"] == ("ok", "2 steps on file")  # the results are rewritten after every step
    assert status["late"][0] == "not run: 12 s budget spent"
    text = (tmp_path / "gpu-nvidia-h200.md").read_text()
    assert "| works | ok |" in text and data["device"] == "NVIDIA H200" and not data["rehearsal"]
    assert "2 steps on file" in capsys.readouterr().out


def test_no_gpu_and_unknown_steps_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu, "gpu_name", lambda: None)
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--out", str(tmp_path)])
    assert gpu.main() == 2
    assert "finds no NVIDIA GPU here; on a CPU, --rehearse" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--out", str(tmp_path), "--rehearse", "--steps", "fd", "warp-drive"])
    assert gpu.main() == 2
    assert "unknown step(s) warp-drive; steps: env, tests, fd" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_summary_lines():
    assert gpu.summary_line("x", "noise\nRESULT: first\nmore\nRESULT: second\ntail") == "second"
    assert gpu.summary_line("tests", "....\n========== 3 passed, 1 skipped in 2.1s ==========") == "3 passed, 1 skipped in 2.1s"
    assert gpu.summary_line("x", "a\nlast line") == "last line"
