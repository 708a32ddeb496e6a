""".ci/torchfree.py, CI's Python 3.10 check: what its venv installs and which import failures it allows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "torchfree.py"
_spec = importlib.util.spec_from_file_location("ci_torchfree", SCRIPT)
torchfree = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = torchfree
_spec.loader.exec_module(torchfree)


def test_the_venv_gets_every_dependency_but_torch_and_triton():
    pytest.importorskip("tomllib", reason="Python 3.10 has no tomllib; CI's main Python (3.11) runs this")
    names = {r.split(">")[0].split("=")[0].split("[")[0].lower() for r in torchfree.requirements()}
    assert {"numpy", "opencv-python-headless", "onnxruntime", "pytest", "paho-mqtt"} <= names
    assert not names & {"torch", "triton", "edgefreq"}


def test_only_the_missing_torch_is_forgiven():
    assert torchfree.missing_heavy(ModuleNotFoundError("No module named 'torch'", name="torch")) == "torch"
    assert torchfree.missing_heavy(ModuleNotFoundError("No module named 'triton.language'", name="triton.language")) == "triton"
    assert torchfree.missing_heavy(ModuleNotFoundError("No module named 'tomllib'", name="tomllib")) is None
    assert torchfree.missing_heavy(SyntaxError("3.11-only syntax")) is None


def test_every_module_of_the_distribution_is_listed():
    names = torchfree.module_names()
    assert {"edgefreq", "edgefreq.cli", "edgefreq.kernels", "edgefreq.export.tensorrt", "edgefreq.runtime.backends.rtx",
            "edgefreq.calibration"} <= set(names)
    assert not [n for n in names if n.endswith("__main__")]
