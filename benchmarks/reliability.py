"""Reliability probes of the line, run as a factory user would (the CLI and the sinks' own API, loopback only).

    python benchmarks/reliability.py --label before   # with PYTHONPATH pointing at the old code
    python benchmarks/reliability.py --label after
    python benchmarks/reliability.py --table          # merges both into benchmarks/results/reliability.md

Each probe prints what it observed; `--label L` stores them in benchmarks/results/reliability-L.json.
Work files (engines, frames, a small tmpfs for the full-disk probes when run as root) go to --work.
The engines are made with the code under test: the embedded default model, and a tiny gray model
trained on synthetic gray frames (cpu-budget config, 32 x 32, one epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EMBEDDED = ROOT / "edgefreq" / "embedded" / "default.onnx"
MAGNETIC_TILE = ROOT.parent / "shared" / "data" / "magnetic_tile" / "train" / "good"

PROBES: list[tuple[str, str, str, Callable[[Path], str]]] = []  # (item, probe, expected, run)


def probe(item: str, name: str, expected: str):
    def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
        PROBES.append((item, name, expected, fn))
        return fn

    return register


def edgefreq(*args: str, timeout: float = 300, stdout=subprocess.PIPE, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefreq", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:110] if lines else ""


def traceback_or_line(proc: subprocess.CompletedProcess) -> str:
    if "Traceback" in proc.stderr:
        return f"rc {proc.returncode}, traceback ({last_line(proc.stderr)})"
    lines = [x for x in proc.stderr.strip().splitlines() if x.startswith("edgefreq") and "error" in x]
    return f"rc {proc.returncode}: {lines[-1][:120] if lines else last_line(proc.stderr)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------- setup

def setup(work: Path) -> None:
    """Engines and frame folders, made once per work folder."""
    work.mkdir(parents=True, exist_ok=True)
    if (work / "gray.onnx").exists():
        return
    from edgefreq.calibrate import calibrate
    from edgefreq.calibration import ThresholdPolicy
    from edgefreq.export.onnx import export_onnx
    from edgefreq.rundir import load_config, load_run
    from edgefreq.runtime.sources.synthetic import SyntheticLine
    from edgefreq.train import train

    line = SyntheticLine((64, 64), seed=0, defect_rate=0.0)
    good = work / "data" / "train" / "good"
    good.mkdir(parents=True)
    for i in range(20):
        cv2.imwrite(str(good / f"{i:03d}.png"), cv2.cvtColor(line.render(i, None), cv2.COLOR_BGR2GRAY))
    cfg = load_config("cpu-budget", ["model.ngf=4", "model.ndf=4", "preprocess.size=[32, 32]", "train.epochs=1",
                                     "train.batch_size=4", "preprocess.channels=1", "preprocess.mean=[0.5]", "preprocess.std=[0.5]"])
    train(cfg, work / "data", work / "run")
    cal = calibrate(work / "run", ThresholdPolicy(), device="cpu")
    model, cfg = load_run(work / "run")
    export_onnx(model, cfg.preprocess, cal, work / "gray.onnx", kind=cfg.model.kind)
    for name in ("default.onnx", "default.yaml"):
        shutil.copy(EMBEDDED.parent / name, work / name)
    gray = work / "gray_frames"
    gray.mkdir()
    sources = sorted(MAGNETIC_TILE.glob("*.jpg"))[:8] if MAGNETIC_TILE.is_dir() else []
    for i, path in enumerate(sources):
        shutil.copy(path, gray / path.name)
    for i in range(8 - len(sources)):
        cv2.imwrite(str(gray / f"synthetic{i}.png"), cv2.cvtColor(line.render(100 + i, None), cv2.COLOR_BGR2GRAY))
    bgr = work / "bgr_frames"
    bgr.mkdir()
    for i in range(8):
        cv2.imwrite(str(bgr / f"{i:02d}.png"), SyntheticLine((96, 128), seed=1, defect_rate=0.3).frame(i)[0])


def edited_engine(work: Path, name: str, edit: Callable[[dict], None], base: str = "default") -> Path:
    """A copy of an engine whose sidecar was edited by hand."""
    folder = work / "edited" / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / f"{base}.onnx", folder / f"{base}.onnx")
    data = yaml.safe_load((work / f"{base}.yaml").read_text())
    edit(data)
    (folder / f"{base}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / f"{base}.onnx"


def run_into(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """`edgefreq run ARGS` with a fresh JSONL sink OUT; the process and the records it wrote."""
    out.unlink(missing_ok=True)
    proc = edgefreq("run", *args, "--sink", str(out), "--quiet")
    return proc, records(out)


def scored_folder(work: Path, out: str, engine: str, frames: str, *more: str) -> str:
    """Runs ENGINE over the frame folder FRAMES: how many records have a score, and the exit status."""
    proc, got = run_into(work / out, "--engine", str(work / engine), "--source", str(work / frames), *more)
    return f"{sum(r['score'] is not None for r in got)}/{len(got)} scored, rc {proc.returncode}"


# ---------------------------------------------------------------------------------------- probes

@probe("1", "gray folder (magnetic tile) -> gray model, --batch 1", "8/8 scored, rc 0")
def gray_to_gray_1(work: Path) -> str:
    return scored_folder(work, "p1a.jsonl", "gray.onnx", "gray_frames")


@probe("1", "gray folder -> gray model, --batch 4", "8/8 scored, rc 0")
def gray_to_gray_4(work: Path) -> str:
    return scored_folder(work, "p1b.jsonl", "gray.onnx", "gray_frames", "--batch", "4")


@probe("1", "gray folder -> 3-channel model (embedded), --batch 4", "8/8 scored, rc 0")
def gray_to_color(work: Path) -> str:
    return scored_folder(work, "p1c.jsonl", "default.onnx", "gray_frames", "--batch", "4")


@probe("1", "BGR folder -> gray model, --batch 4", "8/8 scored, rc 0")
def color_to_gray(work: Path) -> str:
    return scored_folder(work, "p1d.jsonl", "gray.onnx", "bgr_frames", "--batch", "4")


@probe("1", "`edgefreq bench` on the gray folder, gray model", "rc 0, a table")
def bench_gray(work: Path) -> str:
    proc = edgefreq("bench", "--engine", str(work / "gray.onnx"), "--source", str(work / "gray_frames"), "--batches", "1,4",
                    "--frames", "8", "--warmup", "1", "--quiet")
    return f"rc {proc.returncode}" + (", a table" if "frame -> decision" in proc.stdout else f": {last_line(proc.stderr)}")


def just_above_median(data: dict) -> None:
    """The lowest threshold the old code accepts (it must be above the median): most frames NOK."""
    data["calibration"]["threshold"] = data["calibration"]["range"]["quantiles"][0.5] * (1 + 1e-9)


def widen_range(data: dict) -> None:
    """A consistent hand edit: the normal range ten times wider and the threshold moved with it."""
    cal = data["calibration"]
    cal["range"]["max"] = cal["range"]["max"] * 10
    cal["threshold"] = cal["range"]["max"] + 0.1 * (cal["range"]["max"] - cal["range"]["min"])


def set_threshold(value: float) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["calibration"]["threshold"] = value

    return edit


@probe("2", "sidecar `threshold: .inf`", "refused at load: rc 2, one line")
def threshold_inf(work: Path) -> str:
    engine = edited_engine(work, "inf", set_threshold(float("inf")))
    proc, got = run_into(work / "p2a.jsonl", "--engine", str(engine), "--source", "synthetic://?defect_rate=1", "--max-frames", "20", "--rate", "0")
    return f"{traceback_or_line(proc)}; {len(got)} records"


@probe("2", "sidecar `threshold: 1e30`, 20 defective frames", "refused at load: rc 2, one line")
def threshold_huge(work: Path) -> str:
    engine = edited_engine(work, "huge", set_threshold(1e30))
    proc, got = run_into(work / "p2b.jsonl", "--engine", str(engine), "--source", "synthetic://?defect_rate=1", "--max-frames", "20", "--rate", "0")
    return f"{traceback_or_line(proc)}; {sum(r['verdict'] == 'OK' for r in got)} of {len(got)} defects OK"


@probe("2", "embedded sidecar: range and threshold edited together (consistent)", "refused at load (hand edit detected): rc 2")
def range_edited(work: Path) -> str:
    engine = edited_engine(work, "range", widen_range)
    proc = edgefreq("run", "--engine", str(engine), "--source", "synthetic://", "--max-frames", "5", "--rate", "0", "--quiet", stdout=subprocess.DEVNULL)
    return traceback_or_line(proc)


@probe("2", "the same consistent edit on a freshly exported engine (gray model)", "refused at load (sha256 mismatch): rc 2")
def range_edited_fresh(work: Path) -> str:
    engine = edited_engine(work, "range-gray", widen_range, base="gray")
    proc = edgefreq("run", "--engine", str(engine), "--source", str(work / "gray_frames"), "--quiet", stdout=subprocess.DEVNULL)
    return traceback_or_line(proc)


@probe("2", "`--threshold 0.02` (a deliberate override)", "rc 0, every record says threshold 0.02 and that it is an override")
def threshold_override(work: Path) -> str:
    proc, got = run_into(work / "p2d.jsonl", "--engine", str(work / "default.onnx"), "--source", "synthetic://", "--max-frames", "10", "--rate", "0",
                         "--threshold", "0.02")
    marked = sum(r.get("threshold") == 0.02 and r.get("threshold_source") == "override" for r in got)
    return f"rc {proc.returncode}, {marked}/{len(got)} records marked" if got else traceback_or_line(proc)


@probe("3", "4K frames, every one NOK, into nokdir (3 runs)", "no SIGABRT (rc 0, or 3 when images were left unsent), every NOK record written")
def nokdir_backlog(work: Path) -> str:
    results = []
    for run in range(3):
        folder = work / f"nok4k{run}"
        shutil.rmtree(folder, ignore_errors=True)
        proc = edgefreq("run", "--source", "synthetic://?size=3840x2160&defect_rate=1", "--max-frames", "40", "--rate", "0",
                        "--threshold", "-1", "--sink", f"nokdir://{folder}?max_mb=100000", "--sink", str(work / "nok4k.jsonl"), "--quiet",
                        stdout=subprocess.DEVNULL)
        if "--threshold" in proc.stderr and "unrecognized" in proc.stderr:  # before: no override; a hand-edited sidecar instead
            engine = edited_engine(work, "low", just_above_median)
            proc = edgefreq("run", "--engine", str(engine), "--source", "synthetic://?size=3840x2160&defect_rate=1", "--max-frames", "40",
                            "--rate", "0", "--sink", f"nokdir://{folder}?max_mb=100000", "--quiet", stdout=subprocess.DEVNULL)
        written = len(list(folder.glob("*.json")))
        results.append(f"rc {proc.returncode} ({written}/40 records)")
    return "; ".join(results)


@probe("4", "sidecar says input 32x32, engine takes 64x64", "refused at load: rc 2, one line")
def wrong_size(work: Path) -> str:
    def edit(data: dict) -> None:
        data["preprocess"]["size"] = [32, 32]

    proc = edgefreq("run", "--engine", str(edited_engine(work, "size", edit)), "--max-frames", "3", "--rate", "0", "--quiet", stdout=subprocess.DEVNULL)
    return traceback_or_line(proc)


@probe("4", "sidecar says 1 channel, engine takes 3", "refused at load: rc 2, one line")
def wrong_channels(work: Path) -> str:
    def edit(data: dict) -> None:
        data["preprocess"].update(channels=1, mean=[0.5], std=[0.5])

    proc = edgefreq("run", "--engine", str(edited_engine(work, "channels", edit)), "--max-frames", "3", "--rate", "0", "--quiet", stdout=subprocess.DEVNULL)
    return traceback_or_line(proc)


@probe("4", "sidecar says 3 FD levels, engine takes 2", "refused at load: rc 2, one line")
def wrong_levels(work: Path) -> str:
    def edit(data: dict) -> None:
        data["preprocess"]["levels"] = 3
        data["inputs"] = ["band0", "band1", "band2"]

    proc = edgefreq("run", "--engine", str(edited_engine(work, "levels", edit)), "--max-frames", "3", "--rate", "0", "--quiet", stdout=subprocess.DEVNULL)
    return traceback_or_line(proc)


@probe("4", "sidecar outputs swapped (amap, score)", "refused at load: rc 2, one line")
def swapped_outputs(work: Path) -> str:
    def edit(data: dict) -> None:
        data["outputs"] = ["amap", "score"]

    proc = edgefreq("run", "--engine", str(edited_engine(work, "outputs", edit)), "--max-frames", "3", "--rate", "0", "--quiet", stdout=subprocess.DEVNULL)
    return traceback_or_line(proc)


@probe("5", "peak memory, 60 4K frames all NOK, with / without nokdir", "with nokdir within ~1 GB of without")
def nokdir_memory(work: Path) -> str:
    peaks = []
    for with_nokdir in (True, False):
        folder = work / "nokmem"
        shutil.rmtree(folder, ignore_errors=True)
        sinks = ["--sink", f"nokdir://{folder}?max_mb=100000"] if with_nokdir else []
        code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        args = [sys.executable, "-m", "edgefreq", "run", "--source", "synthetic://?size=3840x2160&defect_rate=1", "--max-frames", "60",
                "--rate", "0", "--quiet", "--sink", str(work / "nokmem.jsonl"), *sinks]
        engine_args = ["--threshold", "-1"]
        proc = subprocess.run([sys.executable, "-c", code, *args, *engine_args], capture_output=True, text=True, timeout=900)
        if "unrecognized" in proc.stderr:
            engine = edited_engine(work, "low", just_above_median)
            proc = subprocess.run([sys.executable, "-c", code, *args, "--engine", str(engine)], capture_output=True, text=True, timeout=900)
        peaks.append(int(proc.stdout.strip().splitlines()[-1]) / 2**20)
    return f"{peaks[0]:.2f} GB with, {peaks[1]:.2f} GB without"


def tmpfs(work: Path, name: str, size: str) -> Path | None:
    """A small tmpfs (root only): a disk that can fill up."""
    mount = work / name
    subprocess.run(["umount", str(mount)], capture_output=True)
    mount.mkdir(exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True).returncode:
        return None
    return mount


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@probe("5", "nokdir on a full disk, then space freed, a second run of 50 NOK", "no .tmp left; second run writes 50/50")
def nokdir_full_disk(work: Path) -> str:
    mount = tmpfs(work, "fulldisk", "16m")
    if mount is None:
        return "not run (needs root for a tmpfs)"
    folder = mount / "nok"
    folder.mkdir()
    filler = fill(mount)
    args = ["--source", "synthetic://?size=128x128&defect_rate=1", "--max-frames", "50", "--rate", "0", "--quiet"]
    first = edgefreq("run", *args, "--threshold", "-1", "--sink", f"nokdir://{folder}", stdout=subprocess.DEVNULL)
    engine = None
    if "unrecognized" in first.stderr:
        engine = edited_engine(work, "low", just_above_median)
        first = edgefreq("run", *args, "--engine", str(engine), "--sink", f"nokdir://{folder}", stdout=subprocess.DEVNULL)
    leftover = len(list(folder.glob(".*.tmp")))
    filler.unlink()
    more = ["--engine", str(engine)] if engine else ["--threshold", "-1"]
    before = len(list(folder.glob("*.json")))
    second = edgefreq("run", *args, *more, "--sink", f"nokdir://{folder}", stdout=subprocess.DEVNULL)
    written = len(list(folder.glob("*.json"))) - before
    subprocess.run(["umount", str(mount)], capture_output=True)
    return f"first rc {first.returncode}, {leftover} .tmp left; second rc {second.returncode}, {written}/50 new records"


@probe("6", "MQTT broker down 8 s while 40 decisions come, then back", "all 40 delivered, within ~2 s of the broker's return")
def mqtt_outage(work: Path) -> str:
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        return "not run (no mosquitto)"
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edgefreq.runtime.record import Decision
    from edgefreq.runtime.sinks import open_sink

    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")

    def start() -> subprocess.Popen:
        broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return broker

    broker = start()
    got: list[int] = []
    arrived: list[float] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("line/d", 1)
    sub.on_message = lambda c, u, m: (got.append(json.loads(m.payload)["frame_id"]), arrived.append(time.monotonic()))
    sub.reconnect_delay_set(1, 1)
    sub.connect_async("127.0.0.1", port)
    sub.loop_start()
    sink = open_sink(f"mqtt://127.0.0.1:{port}/line/d?qos=1")
    time.sleep(1.0)

    def decision(i: int) -> Decision:
        return Decision(frame_id=i, capture_ts=time.time(), decided_ts=time.time(), source="probe", score=0.1, score_norm=0.1,
                        threshold=1.0, verdict="OK", latency_ms=dict.fromkeys(("capture", "preprocess", "infer", "decide", "total"), 0.0),
                        dropped=0, engine="probe@000000000000")

    broker.send_signal(signal.SIGKILL)
    broker.wait()
    for i in range(40):
        sink.submit(decision(i))
        time.sleep(0.2)
    broker = start()
    back = time.monotonic()
    deadline = back + 40
    while time.monotonic() < deadline and len(set(got) & set(range(40))) < 40:
        time.sleep(0.1)
    report = sink.close(5.0)
    sub.loop_stop()
    broker.terminate()
    broker.wait()
    delivered = len(set(got) & set(range(40)))
    first = f"{arrived[0] - back:.1f} s" if arrived else "never"
    return f"{delivered}/40 delivered, first {first} after the broker was back; sink sent {report['sent']} failed {report['failed']}"


@probe("7", "folder: 3 good images, 1 corrupt file", "4 decisions (the corrupt one a fail-safe NOK), file names in records, counted")
def folder_corrupt(work: Path) -> str:
    folder = work / "corrupt"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, path in enumerate(sorted((work / "bgr_frames").glob("*.png"))[:3]):
        shutil.copy(path, folder / f"{i}.png")
    (folder / "1b.png").write_bytes(b"not a png")
    summary = work / "p7.json"
    proc, got = run_into(work / "p7.jsonl", "--source", str(folder), "--summary", str(summary))
    names = sum(any(n in r["source"] for n in ("0.png", "1.png", "1b.png", "2.png")) for r in got)
    counted = json.loads(summary.read_text()).get("not_inspected") if summary.exists() else None
    return f"rc {proc.returncode}, {len(got)} decisions, {names} name their file, not_inspected {counted}"


@probe("8", "webhook that refuses every connection", "non-zero exit (sink short)")
def dead_webhook(work: Path) -> str:
    proc = edgefreq("run", "--max-frames", "20", "--rate", "0", "--sink", f"http://127.0.0.1:{free_port()}/hook", "--quiet")
    return f"rc {proc.returncode}"


@probe("8", "stdout closed (`edgefreq run | true`)", "non-zero exit (sink short)")
def closed_stdout(work: Path) -> str:
    proc = subprocess.run(f"{sys.executable} -m edgefreq run --max-frames 50 --rate 0 --quiet | true; echo ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=300)
    return f"rc {proc.stdout.strip()}"


@probe("9", "webhook `?key=SECRET` failing", "SECRET never printed")
def webhook_secret(work: Path) -> str:
    proc = edgefreq("run", "--max-frames", "5", "--rate", "0", "--sink", f"http://127.0.0.1:{free_port()}/hook?key=SECRET123")
    return "printed" if "SECRET123" in proc.stderr else "not printed"


@probe("10", "JSONL on a disk that fills, then frees (100 + 200 decisions)", "300 lines, all valid, for sent 300")
def jsonl_disk_full(work: Path) -> str:
    mount = tmpfs(work, "jsonlfull", "1m")
    if mount is None:
        return "not run (needs root for a tmpfs)"
    from edgefreq.runtime.record import Decision
    from edgefreq.runtime.sinks import SinkOptions, open_sink

    def decision(i: int) -> Decision:
        return Decision(frame_id=i, capture_ts=time.time(), decided_ts=time.time(), source="probe", score=0.1, score_norm=0.1,
                        threshold=1.0, verdict="OK", latency_ms=dict.fromkeys(("capture", "preprocess", "infer", "decide", "total"), 0.0),
                        dropped=0, engine="probe@000000000000")

    path = mount / "d.jsonl"
    sink = open_sink(str(path), SinkOptions(queue=1000, retries=50, backoff_s=0.05, backoff_max_s=0.2))
    filler = fill(mount)
    for i in range(100):
        sink.submit(decision(i))
    time.sleep(1.0)
    filler.unlink()
    for i in range(100, 300):
        sink.submit(decision(i))
    report = sink.close(10.0)
    lines = path.read_text().splitlines()
    valid = 0
    for line in lines:
        try:
            json.loads(line)
            valid += 1
        except ValueError:
            pass
    ids = [json.loads(x)["frame_id"] for x in lines if x.startswith("{") and x.endswith("}")]
    subprocess.run(["umount", str(mount)], capture_output=True)
    return f"{len(lines)} lines ({valid} valid, {len(ids) - len(set(ids))} repeated) for sent {report['sent']}"


@probe("11", "`--summary` into a missing folder", "rc 2 at start, one line, no frame inspected")
def summary_missing(work: Path) -> str:
    proc = edgefreq("run", "--max-frames", "30", "--rate", "0", "--summary", str(work / "nowhere" / "s.json"), stdout=subprocess.DEVNULL)
    inspected = "frames in" in proc.stderr
    return f"{traceback_or_line(proc)}{'; ran the line first' if inspected else ''}"


@probe("12", "no frame could be inspected (every frame smaller than --roi)", "non-zero exit")
def none_inspected(work: Path) -> str:
    proc = edgefreq("run", "--source", str(work / "bgr_frames"), "--roi", "0,0,500,500", "--quiet", stdout=subprocess.DEVNULL)
    return f"rc {proc.returncode}"


@probe("13", "`engine` field of a record", "NAME@HASH, as docs/decision-record.md says")
def engine_field(work: Path) -> str:
    _, got = run_into(work / "p13.jsonl", "--max-frames", "1", "--rate", "0")
    return got[0]["engine"] if got else "no record"


def infer_ms(proc: subprocess.CompletedProcess) -> str:
    row = next((line.split() for line in proc.stdout.splitlines() if line.strip().startswith("inference")), None)
    return f"p50 {float(row[1]):.1f} / p90 {float(row[2]):.1f} ms" if row else f"rc {proc.returncode}: {last_line(proc.stderr)}"


@probe("14", "a .pt2 (AOTInductor, CPU) at the default thread count on this loaded 2-core box, inference per frame",
       "no pathological wait: close to --threads 1")
def pt2_threads(work: Path) -> str:
    pt2 = work / "gray.cpu.pt2"
    if not pt2.exists():
        edgefreq("build", str(work / "run"), "--format", "pt2", "--out", str(pt2), "--device", "cpu", timeout=900)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    args = ["bench", "--engine", str(pt2), "--batches", "1", "--frames", "60", "--warmup", "3", "--quiet", "--size", "640x480"]
    default = subprocess.run([sys.executable, "-m", "edgefreq", *args], capture_output=True, text=True, timeout=600, env=env)
    one = subprocess.run([sys.executable, "-m", "edgefreq", *args, "--threads", "1"], capture_output=True, text=True, timeout=600, env=env)
    return f"default {infer_ms(default)}; --threads 1 {infer_ms(one)}; load {os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", help="before | after: run the probes and store what they saw")
    p.add_argument("--work", type=Path, default=Path("/tmp/edgefreq-reliability"))
    p.add_argument("--only", help="comma-separated item numbers to run")
    p.add_argument("--table", action="store_true", help="write benchmarks/results/reliability.md from the stored runs")
    args = p.parse_args(argv)
    if args.label:
        work = args.work / args.label
        setup(work)
        out = RESULTS / f"reliability-{args.label}.json"
        seen = json.loads(out.read_text()) if out.exists() else {}
        only = set(args.only.split(",")) if args.only else None
        for item, name, expected, fn in PROBES:
            if only and item not in only:
                continue
            start = time.perf_counter()
            try:
                observed = fn(work)
            except Exception as exc:  # a probe that breaks says how
                observed = f"probe failed: {type(exc).__name__}: {exc}"
            seen[name] = observed
            print(f"[{item}] {name}: {observed} ({time.perf_counter() - start:.0f} s)", flush=True)
            out.write_text(json.dumps(seen, indent=1) + "\n")
    if args.table:
        runs = {label: json.loads((RESULTS / f"reliability-{label}.json").read_text()) for label in ("before", "after")
                if (RESULTS / f"reliability-{label}.json").exists()}
        rows = ["| item | probe | expected | before | after |", "|---|---|---|---|---|"]
        for item, name, expected, _ in PROBES:
            cells = [runs.get(label, {}).get(name, "not run") for label in ("before", "after")]
            cells = [c.replace("|", "\\|") for c in (name, expected, *cells)]
            rows.append(f"| {item} | " + " | ".join(cells) + " |")
        print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
