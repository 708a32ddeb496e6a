"""`--trigger http`: parts POSTed to /api/trigger on the --http server (operator token), end to end
through `edgefreq run` with the embedded model; each part's record carries its id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # noqa: F401  (the line it starts runs the embedded model: not a torch-free test)
from conftest import free_port, wait_until

from edgefreq.cli import main

pytest.importorskip("aiohttp")
pytest.importorskip("onnxruntime")
requests = pytest.importorskip("requests")

TOKEN = "plc-token"


def test_posted_parts_are_inspected_and_recorded_with_their_ids(tmp_path: Path) -> None:
    port, out = free_port(), tmp_path / "out.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefreq", "run", "--trigger", "http", "--http", f"127.0.0.1:{port}", "--rate", "40",
         "--sink", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "EDGEFREQ_HTTP_TOKEN": TOKEN},
    )
    url = f"http://127.0.0.1:{port}/api/trigger"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code in (200, 503)
            except requests.ConnectionError:
                return False

        assert wait_until(up, 60, every=0.2), "the --http server never answered"
        assert requests.post(url, json={"part_id": "A-1"}, timeout=5).status_code == 401  # no token: no trigger
        assert requests.post(url, json={"part_id": "../x"}, headers=auth, timeout=5).status_code == 400
        assert requests.post(url, json={"part": "A-1"}, headers=auth, timeout=5).status_code == 400
        for k in range(5):
            reply = requests.post(url, json={"part_id": f"A-{k}"}, headers=auth, timeout=5)
            assert reply.status_code == 202 and reply.json()["part_id"] == f"A-{k}"
            assert wait_until(lambda: out.exists() and out.read_text().count("\n") == k + 1, 10)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["part_id"] for r in records] == [f"A-{k}" for k in range(5)]
    assert all(r["reason"] is None and r["frame_id"] is not None and r["capture_ts"] >= r["trigger_ts"] for r in records)
    assert "parts: 5 triggers, 5 inspected" in err


@pytest.mark.parametrize("argv, env, message", [
    (["--trigger", "http"], {"EDGEFREQ_HTTP_TOKEN": TOKEN}, "--trigger http needs --http"),
    (["--trigger", "http", "--http", "127.0.0.1:0"], {}, "--trigger http needs EDGEFREQ_HTTP_TOKEN"),
    (["--trigger", "modbus", "--trigger-timeout", "0"], {}, "--trigger-timeout must be above 0"),
])
def test_the_http_trigger_is_refused_in_one_line_without_its_server_or_token(argv, env, message, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("EDGEFREQ_HTTP_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["run", *argv, "--sink", str(tmp_path / "never.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "never.jsonl").exists()
