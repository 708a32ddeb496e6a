"""Shared test fixtures.

Servers the integration tests talk to are real processes bound to 127.0.0.1 on free ports,
stopped at teardown. When a server's binary is missing the test is skipped with the apt
package to install, unless EDGEFREQ_REQUIRE_SERVERS=1 (CI sets it): then it fails.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from edgefreq.runtime.record import Decision

REQUIRE_SERVERS = os.environ.get("EDGEFREQ_REQUIRE_SERVERS") == "1"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread, and the CPU is shared (use with pytestmark)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_interrupted_then_resumed(monkeypatch: pytest.MonkeyPatch, cfg, data: Path, out: Path, after_epoch: int = 2) -> None:
    """Train `cfg` into `out`, interrupted (KeyboardInterrupt) right after the checkpoint of
    `after_epoch`, then resumed by running the same training again."""
    import edgefreq.train as train_mod

    real_save = train_mod.save_checkpoint

    def save_then_interrupt(out, model, optimizers, epoch, generators, ema=None):
        real_save(out, model, optimizers, epoch, generators, ema)
        if epoch == after_epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, data, out)
    assert not (out / "model.safetensors").exists()
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    train_mod.train(cfg, data, out)


TINY_MODEL = ["model.ngf=4", "model.ndf=4", "preprocess.size=[32, 32]", "train.epochs=1", "train.batch_size=4"]


def train_tiny(root: Path, images: list | None = None, overrides: list[str] | None = None) -> Path:
    """A tiny cpu-budget model (TINY_MODEL + `overrides`) trained for one epoch into root/run on
    `images` (default: 20 good frames of the synthetic line, seed 0, 64 x 64); returns root/run."""
    import cv2

    from edgefreq.rundir import load_config
    from edgefreq.runtime.sources.synthetic import SyntheticLine
    from edgefreq.train import train

    if images is None:
        line = SyntheticLine((64, 64), seed=0, defect_rate=0.0)
        images = [line.render(i, None) for i in range(20)]
    good = root / "data" / "train" / "good"
    good.mkdir(parents=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(good / f"{i:03d}.png"), image)
    train(load_config("cpu-budget", [*TINY_MODEL, *(overrides or [])]), root / "data", root / "run")
    return root / "run"


def export_tiny(run: Path, out: Path) -> Path:
    """The run calibrated with the default threshold policy and exported to ONNX at `out`."""
    from edgefreq.calibrate import calibrate
    from edgefreq.calibration import ThresholdPolicy
    from edgefreq.export.onnx import export_onnx
    from edgefreq.rundir import load_run

    cal = calibrate(run, ThresholdPolicy(), device="cpu")
    model, cfg = load_run(run)
    export_onnx(model, cfg.preprocess, cal, out, kind=cfg.model.kind)
    return out


def require_binary(name: str, apt_package: str) -> str:
    """Path of a server binary (PATH, then the sbin folders), else skip (or fail under CI)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found:
        return found
    skip_or_fail(f"{name} is not installed (apt-get install {apt_package})")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test for `reason` (a server or its client library is missing), or fail under CI."""
    if REQUIRE_SERVERS:
        pytest.fail(f"{reason}; EDGEFREQ_REQUIRE_SERVERS=1 requires it")
    pytest.skip(reason)


def load_benchmark(name: str) -> ModuleType:
    """A script from benchmarks/ (not a package) as a module, for testing its functions."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there while the file runs
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, every: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


class ServerProcess:
    """A server started as a child process with its output in `log`: `start()` (again: a restart)
    waits until `ready()` holds and fails the test with the log's tail when it does not come up;
    `kill()` crashes it (SIGKILL, no goodbye to its clients); `stop()` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, args: list[str], log: Path, ready: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> None:
        self.name, self.args, self.log, self.ready, self.timeout, self.every = name, args, log, ready, timeout, every
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.stop()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(lambda: self.process.poll() is not None or self.ready(), self.timeout, self.every) or self.process.poll() is not None:
            self.stop()
            pytest.fail(f"{self.name} did not come up:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


class Mosquitto(ServerProcess):
    """A mosquitto broker on 127.0.0.1:port; `kill()` and `start()` again keep the same port."""

    def __init__(self, binary: str, folder: Path, config: list[str]) -> None:
        self.port = free_port()
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stdout", *config]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # stay root: it must read files in the test folder
        self.config.write_text("\n".join(lines) + "\n")
        super().__init__(f"mosquitto on port {self.port}", [binary, "-c", str(self.config)], folder / "mosquitto.log",
                         lambda: port_open(self.port))


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """make(config_lines=[...]) -> a started broker; all are stopped at teardown."""
    binary = require_binary("mosquitto", "mosquitto")
    brokers: list[Mosquitto] = []

    def make(config_lines: list[str] | None = None) -> Mosquitto:
        folder = tmp_path / f"mosquitto{len(brokers)}"
        folder.mkdir()
        broker = Mosquitto(binary, folder, config_lines if config_lines is not None else ["allow_anonymous true"])
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A started anonymous broker on 127.0.0.1."""
    return mosquitto_factory()


@pytest.fixture
def make_decision() -> Callable[..., Decision]:
    """make_decision(frame_id=0, verdict="OK", **other fields) -> a valid Decision."""

    def make(frame_id: int = 0, verdict: str = "OK", **changes: object) -> Decision:
        fields: dict[str, object] = dict(
            frame_id=frame_id,
            capture_ts=1_738_333_501.0 + frame_id / 30,
            decided_ts=1_738_333_501.01 + frame_id / 30,
            source="file:///line1/frames",
            score=0.02 if verdict == "NOK" else 0.005,
            score_norm=2.5 if verdict == "NOK" else 0.4,
            threshold=0.01,
            verdict=verdict,
            latency_ms={"capture": 0.5, "preprocess": 1.0, "infer": 8.0, "decide": 0.1, "total": 9.6},
            dropped=0,
            engine="bottle.onnx@0123456789ab",
        )
        fields.update(changes)
        return Decision(**fields)

    return make
