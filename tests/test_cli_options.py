"""The option vocabulary every verb shares (edgefreq.cli.options, edgefreq.geometry) and the
dispatcher's one-line errors: sizes WxH, regions X,Y,W,H, --batch N, --device, no abbreviations."""

from __future__ import annotations

import pytest

from edgefreq.cli import VERBS, build_parser, main
from edgefreq.cli.options import DEVICES, device, positive_int
from edgefreq.errors import UserError
from edgefreq.geometry import parse_roi, parse_size


def test_sizes_are_width_x_height():
    assert parse_size("1280x720") == (1280, 720)
    assert parse_size(" 96X64 ") == (96, 64)
    for bad in ("1280", "1280x", "x720", "0x720", "1280x-1", "1280*720", "12.5x7", "720,1280", ""):
        with pytest.raises(UserError, match=r"--size must be WIDTHxHEIGHT") as info:
            parse_size(bad, "--size")
        assert "\n" not in str(info.value)


def test_regions_are_left_top_width_height():
    assert parse_roi("120,80,400,300") == (120, 80, 400, 300)
    assert parse_roi(" 0, 0, 48 ,48") == (0, 0, 48, 48)
    for bad in ("10x10+5", "400x300+120+80", "1,2,3", "1,2,3,4,5", "-1,0,4,4", "a,b,c,d", ""):
        with pytest.raises(UserError, match=r"--roi must be X,Y,W,H"):
            parse_roi(bad, "--roi")
    with pytest.raises(UserError, match="width and height must be at least 1"):
        parse_roi("5,5,0,10", "--roi")


def test_counts_and_devices():
    assert positive_int("--batch")("8") == 8
    for bad, message in (("0", "--batch must be at least 1, got 0"), ("-3", "at least 1"), ("two", "whole number"), ("1.5", "whole number")):
        with pytest.raises(UserError, match=message):
            positive_int("--batch")(bad)
    assert [device(d) for d in DEVICES] == ["auto", "cpu", "cuda"] and device(" CPU ") == "cpu"
    for bad in ("gpu", "cuda:0", "tpu", ""):
        with pytest.raises(UserError, match=r"--device must be auto, cpu or cuda"):
            device(bad)


def options_of(verb: str) -> dict[str, object]:
    sub = next(a for a in build_parser(verb)._actions if a.dest == "verb")
    return {o: a for a in sub.choices[verb]._actions for o in a.option_strings}


@pytest.mark.parametrize("verb", ["train", "calibrate", "eval", "build", "run", "bench"])
def test_one_device_option(verb):
    pytest.importorskip("torch")
    action = options_of(verb)["--device"]
    assert action.type is device and action.metavar == "{auto,cpu,cuda}" and action.choices is None


def test_batch_means_images_per_engine_call_and_batches_a_list():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    for verb in ("calibrate", "eval", "run"):
        assert "images per engine call" in options_of(verb)["--batch"].help, verb
        assert "--batches" not in options_of(verb)
    for verb in ("bench", "build"):
        assert "--batch" not in options_of(verb) and "--batches" in options_of(verb), verb


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--roi", "10x10+5"], "edgefreq run: error: --roi must be X,Y,W,H"),
        (["run", "--roi", "0", "0", "48", "48"], "edgefreq run: error: --roi must be X,Y,W,H"),  # the old X Y W H form
        (["run", "--resolution", "1280"], "edgefreq run: error: --resolution must be WIDTHxHEIGHT"),
        (["run", "--device", "gpu"], "edgefreq run: error: --device must be auto, cpu or cuda, got 'gpu'"),
        (["run", "--batch", "0"], "edgefreq run: error: --batch must be at least 1, got 0"),
        (["run", "--capacity", "0"], "edgefreq run: error: --capacity must be at least 1, got 0"),
        (["run", "--fd", "fast"], "edgefreq run: error: argument --fd: invalid choice: 'fast'"),
        (["bench", "--batch", "4"], "edgefreq bench: error: unrecognized arguments: --batch 4"),  # no abbreviation of --batches
        (["bench", "--size", "1280"], "edgefreq bench: error: --size must be WIDTHxHEIGHT"),
        (["bench", "--batches", "1,x"], "edgefreq bench: error: --batches must be a comma-separated list"),
        (["fd", "x.png", "--out", "o", "--size", "32", "32"], "edgefreq fd: error: --size must be WIDTHxHEIGHT"),
        (["build", "x.onnx", "--format", "plan", "--batches", "1,2"], "edgefreq build: error: --batches must be MIN,OPT,MAX or MAX"),
        (["calibrate"], "edgefreq calibrate: error: the following arguments are required: run (see `edgefreq calibrate --help`)"),
        (["trian"], "edgefreq: error: argument VERB: invalid choice: 'trian'"),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(message) and "\n" not in err and captured.out == "", err
    assert not list(tmp_path.iterdir())  # nothing written


def test_every_verb_is_one_module_under_edgefreq_cli():
    assert {module for module, _ in VERBS.values()} == {f"edgefreq.cli.{v}" for v in VERBS}


def test_train_device_sets_the_configs_train_device(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    import edgefreq.cli.train as verb

    seen = []
    monkeypatch.setattr(verb, "train", lambda cfg, data, out: seen.append(cfg.train.device))
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--device", "cpu"]) == 0
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "train.device=cpu"]) == 0
    assert seen == ["cpu", "auto", "cpu"]  # without --device: the config's


def run_embedded(tmp_path, *flags: str, source: str = "synthetic://?size=160x120") -> tuple[int, str]:
    import subprocess
    import sys

    summary = tmp_path / "s.json"
    proc = subprocess.run(
        [sys.executable, "-m", "edgefreq", "run", "--source", source, "--max-frames", "3", "--rate", "0",
         "--sink", str(tmp_path / "d.jsonl"), "--summary", str(summary), *flags],
        capture_output=True, text=True, timeout=120,
    )
    return proc.returncode, proc.stderr


def test_run_device_selects_the_engines_device(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    code, err = run_embedded(tmp_path, "--device", "cpu")
    assert code in (0, 4) and "with " in err and "(cpu, threshold" in err, err  # the line's start says where the engine runs
    (tmp_path / "d.jsonl").unlink()
    (tmp_path / "s.json").unlink()
    code, err = run_embedded(tmp_path, "--device", "cuda")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert "(cuda" in err, err
    else:
        assert code == 2 and err.strip() == "edgefreq run: error: onnxruntime has no CUDA provider here: pip install onnxruntime-gpu, or use device cpu"
        assert not (tmp_path / "d.jsonl").exists() and not (tmp_path / "s.json").exists()  # refused before anything is written


def test_run_roi_is_x_y_w_h(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    import json

    code, err = run_embedded(tmp_path, "--roi", "100,0,60,120")  # fits 160x120 only as left 100, width 60
    assert code == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["not_inspected"] == 0, err
    code, err = run_embedded(tmp_path, "--roi", "0,100,60,120")  # top 100 + height 120 > 120: no frame fits
    assert code == 4 and "no frame could be inspected" in err, err


def test_run_resolution_is_w_x_h_and_reaches_the_source(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    import json

    code, err = run_embedded(tmp_path, "--resolution", "96x80", "--roi", "0,0,96,80", source="synthetic://")
    assert code == 0 and json.loads((tmp_path / "s.json").read_text())["not_inspected"] == 0, err
    code, err = run_embedded(tmp_path, "--resolution", "96x80", "--roi", "0,0,80,96", source="synthetic://")  # H x W would fit this
    assert code == 4 and "no frame could be inspected" in err, err
