"""`edgefreq bench` on a tiny exported engine, the roofline arithmetic, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from edgefreq.calibration import Calibration
from edgefreq.cli import main
from edgefreq.errors import UserError
from edgefreq.export.onnx import export_onnx
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model
from edgefreq.models.base import AnomalyModel
from edgefreq.roofline import ModelCost, Peaks, measure_peaks, model_cost
from edgefreq.runtime.bench import STAGES, Timer, parse_batches, percentiles, run_bench
from edgefreq.runtime.backends import open_backend
from edgefreq.runtime.sources import SourceOptions, SyntheticLine, open_source

pytest.importorskip("onnxruntime")

SPEC = Preprocess(size=(32, 32), levels=2)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Path:
    """A random-weight OCR-GAN exported to ONNX with a calibration (latency does not need training)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="ocrgan", ngf=4, ndf=4), SPEC.channels, SPEC.levels, SPEC.size).eval()
    out = tmp_path_factory.mktemp("bench") / "tiny.onnx"
    export_onnx(model, SPEC, Calibration.from_scores(np.linspace(0.1, 0.2, 30)), out, kind="ocrgan")
    return out


def check_run(run: dict, batch: int, frames: int) -> None:
    assert run["batch"] == batch
    assert run["frames"] == math.ceil(frames / batch) * batch == run["batches"] * batch
    assert set(run["latency_ms"]) == set(STAGES)
    for stage, q in run["latency_ms"].items():
        assert 0 <= q["p50"] <= q["p90"] <= q["p99"] <= q["max"], (stage, q)
        assert q["mean"] <= q["max"]
    lat = run["latency_ms"]
    # The inspect call contains the Inspector's three stages.
    assert lat["frame_to_decision"]["max"] >= lat["preprocess"]["p50"] + lat["infer"]["p50"]
    assert lat["infer"]["p50"] > 0 and lat["capture"]["p50"] > 0
    assert 0 < run["fps_with_capture"] < run["fps"]


def test_bench_verb_on_synthetic_frames(engine: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--engine", str(engine), "--batches", "1,3", "--frames", "7", "--warmup", "1",
                 "--size", "96x64", "--device", "cpu", "--json", str(out), "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert (data["backend"], data["device"], data["timer"]) == ("onnxruntime", "cpu", "perf_counter")
    assert data["frame_size"] == [64, 96, 3] and data["model_input"]["size"] == [32, 32]
    assert data["source"] == "synthetic://?size=96x64"
    assert [r["batch"] for r in data["runs"]] == [1, 3]
    check_run(data["runs"][0], 1, 7)
    check_run(data["runs"][1], 3, 7)
    table = capsys.readouterr().out
    assert "frame -> decision" in table and "preprocess + FD" in table and table.count("fps") == 2


def test_bench_on_a_folder_of_real_images_loops_it(engine: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    line = SyntheticLine((48, 80), seed=2)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), line.frame(i)[0])
    backend = open_backend(engine, device="cpu")
    with open_source(str(folder), SourceOptions(loop=0)) as source:
        report = run_bench(backend, source, [2], frames=5, warmup=1, progress=False)
    data = report.to_dict()
    assert data["frame_size"] == [48, 80, 3]
    check_run(data["runs"][0], 2, 5)  # 8 frames read (1 warm-up batch + 3 timed) from a folder of 3


def test_bench_refuses_bad_input(engine: Path, tmp_path: Path, capsys) -> None:
    cases = [
        (["--engine", str(tmp_path / "missing.onnx")], "not found"),
        (["--engine", str(engine), "--batches", "1,x"], "comma-separated list of positive integers"),
        (["--engine", str(engine), "--batches", "0,8"], "at least 1"),
        (["--engine", str(engine), "--batches", "8,8"], "twice"),
        (["--engine", str(engine), "--batch", "8"], "unrecognized arguments: --batch"),  # bench's list is --batches
        (["--engine", str(engine), "--size", "big"], "WIDTHxHEIGHT"),
        (["--engine", str(engine), "--size", "0x64"], "WIDTHxHEIGHT"),
        (["--engine", str(engine), "--device", "gpu"], "--device must be auto, cpu or cuda"),
        (["--engine", str(engine), "--frames", "0"], "--frames must be at least 1"),
        (["--engine", str(engine), "--json", str(tmp_path / "no" / "b.json")], "folder not found"),
        (["--engine", str(engine), "--source", str(tmp_path / "nothing")], "no such file or folder"),
    ]
    for args, message in cases:
        assert main(["bench", *args, "--quiet"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("edgefreq bench: error:") and message in err and "\n" not in err, (args, err)
    assert not (tmp_path / "no").exists()


def test_bench_runs_the_engine_on_the_device_asked_for(engine: Path, tmp_path: Path, capsys) -> None:
    import onnxruntime

    out = tmp_path / "b.json"
    args = ["bench", "--engine", str(engine), "--batches", "1", "--frames", "2", "--warmup", "0", "--size", "64x48", "--json", str(out), "--quiet"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert main([*args, "--device", "cuda"]) == 0 and json.loads(out.read_text())["device"].startswith("cuda")
    else:
        assert main([*args, "--device", "cuda"]) == 2
        assert "no CUDA provider" in capsys.readouterr().err and not out.exists()


def test_parse_batches() -> None:
    assert parse_batches("1,8,32") == [1, 8, 32]
    assert parse_batches(" 4 ") == [4]
    for bad in ("", "1,,2", "-1", "1.5"):
        with pytest.raises(UserError):
            parse_batches(bad)


def test_percentiles_are_interpolated_and_ordered() -> None:
    q = percentiles(list(range(1, 101)))  # 1..100
    assert q["p50"] == pytest.approx(50.5) and q["p90"] == pytest.approx(90.1) and q["p99"] == pytest.approx(99.01)
    assert q["max"] == 100 and q["mean"] == pytest.approx(50.5)
    assert percentiles([3.0]) == {"p50": 3.0, "p90": 3.0, "p99": 3.0, "max": 3.0, "mean": 3.0}


class OneConv(AnomalyModel):
    """score = mean (x - conv(x))^2 over one 3 -> 3 conv 3x3 with bias: hand-checkable costs."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__(ModelConfig(kind="wfdl", map_sigma=0.0), 3, 1, size)
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=True)
        self.norm = nn.BatchNorm2d(3)  # folds into the conv: no FLOPs, no weight bytes

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def reconstruct(self, bands: list[torch.Tensor]) -> torch.Tensor:
        return self.norm(self.conv(bands[0]))

    def losses_g(self, bands: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x_hat = self.reconstruct(bands)
        loss = ((x_hat - bands[0]) ** 2).mean()
        return {"total": loss, "content": loss}, x_hat


def test_roofline_of_one_conv_by_hand() -> None:
    h, w = 16, 20
    cost = model_cost(OneConv((h, w)), 3, (h, w), 1)
    assert cost.flops == 2 * (h * w * 3) * (3 * 3 * 3)  # 2 x outputs x MACs per output = 17280
    assert cost.weight_bytes == (3 * 3 * 3 * 3 + 3) * 4  # weight + bias, float32; BatchNorm not counted
    assert cost.input_bytes == 3 * h * w * 4
    assert cost.output_bytes == (1 + h * w) * 4  # score + map
    assert cost.activation_bytes == 2 * 3 * h * w * 4  # the conv output, written once and read once
    b = 4
    assert cost.compulsory_bytes(b) == 336 + b * (3840 + 1284)
    assert cost.batch_bytes(b) == cost.compulsory_bytes(b) + b * 7680


def test_floor_is_the_larger_term() -> None:
    cost = ModelCost(flops=10**9, weight_bytes=10**6, input_bytes=10**5, output_bytes=0, activation_bytes=4 * 10**5)
    peaks = Peaks(flops_per_s=1e11, bytes_per_s=1e9, device="cpu", how="by hand")
    # batch 1: compute 1e9 / 1e11 = 10 ms; bytes 1e6 + 5e5 = 1.5 MB / 1e9 B/s = 1.5 ms
    assert peaks.floor_ms(cost, 1) == (pytest.approx(10.0), "compute")
    slow_memory = Peaks(flops_per_s=1e12, bytes_per_s=1e8, device="cpu", how="by hand")
    # batch 2: compute 2 ms; bytes (1e6 + 2 x 5e5) / 1e8 = 20 ms; without activations (1e6 + 2e5) / 1e8 = 12 ms
    assert slow_memory.floor_ms(cost, 2) == (pytest.approx(20.0), "memory")
    assert slow_memory.floor_ms(cost, 2, activations=False) == (pytest.approx(12.0), "memory")


def test_measured_peaks_on_this_cpu_are_plausible() -> None:
    peaks = measure_peaks("cpu", matmul_n=256, copy_mib=8, reps=3)
    assert 1e8 < peaks.flops_per_s < 1e14 and 1e8 < peaks.bytes_per_s < 1e13
    assert "perf_counter" in peaks.how and peaks.device == "cpu"


def test_timer_on_cpu_returns_the_result_and_milliseconds() -> None:
    timer = Timer("cpu")
    value, ms = timer.measure(lambda: sum(range(1000)))
    assert value == 499500 and 0 <= ms < 1000
    assert len(timer.samples(lambda: None, reps=4, warmup=2)) == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_on_cuda_uses_cuda_events(tmp_path: Path) -> None:
    """A run folder on the GPU: Triton FD, torch backend, frame -> decision timed with CUDA events."""
    from safetensors.torch import save_file

    from edgefreq.config import to_dict, write_yaml
    from edgefreq.rundir import RunConfig

    cfg = RunConfig(model=ModelConfig(kind="ocrgan", ngf=4, ndf=4), preprocess=SPEC)
    torch.manual_seed(0)
    model = build_model(cfg.model, SPEC.channels, SPEC.levels, SPEC.size)
    run = tmp_path / "run"
    run.mkdir()
    write_yaml(run / "config.yaml", to_dict(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "model.safetensors"))
    Calibration.from_scores(np.linspace(0.1, 0.2, 30)).save(run / "calibration.yaml")
    backend = open_backend(run, device="cuda")
    with open_source("synthetic://?size=320x240", SourceOptions(loop=0)) as source:
        data = run_bench(backend, source, [1, 4], frames=8, warmup=2, progress=False).to_dict()
    assert data["timer"] == "cuda events" and data["device"].startswith("cuda")
    for run_data, batch in zip(data["runs"], (1, 4)):
        check_run(run_data, batch, 8)
    peaks = measure_peaks("cuda", matmul_n=1024, copy_mib=64, reps=3)
    assert peaks.flops_per_s > 1e11 and peaks.bytes_per_s > 1e10 and "cuda events" in peaks.how
