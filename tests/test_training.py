"""Training that visibly learns: the generator check, the GAN step, EMA, the split seed, threads,
rescoring a trained run, and the config and run-folder errors a user can cause."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import edgefreq.train as train_mod
from conftest import train_interrupted_then_resumed
from edgefreq.calibrate import calibrate
from edgefreq.calibration import COMPARED_POLICIES, ThresholdPolicy
from edgefreq.errors import UserError
from edgefreq.evaluate import warnings_for
from edgefreq.models.ocrgan import OCRGAN
from edgefreq.rundir import STATS_FILE, default_threads, load_config, load_run, set_threads

GAN = ["model.ngf=8", "model.ndf=8", "preprocess.size=[32, 32]", "train.batch_size=4", "train.lr=0.001", "train.device=cpu"]
KINDS = {"skipganomaly": ["model.kind=skipganomaly", "preprocess.levels=1"], "ocrgan": ["model.kind=ocrgan", "preprocess.levels=2"]}
WFDL = ["model.kind=wfdl", "preprocess.levels=1", "model.wfdl_width=0.25", "preprocess.size=[32, 32]", "train.batch_size=4",
        "train.epochs=2", "train.device=cpu"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """24 good images of a part that moves and changes colour: the mean image is a poor template,
    so only a generator that learned reconstructs better than it."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "train/good").mkdir(parents=True)
    (root / "test/good").mkdir(parents=True)
    (root / "test/dent").mkdir(parents=True)
    rng = np.random.default_rng(0)

    def draw(defect: bool = False) -> np.ndarray:
        img = np.full((32, 32, 3), 40, np.uint8)
        centre = (int(rng.integers(8, 24)), int(rng.integers(8, 24)))
        cv2.circle(img, centre, int(rng.integers(4, 9)), tuple(int(v) for v in rng.integers(60, 255, 3)), -1)
        corner = (int(rng.integers(0, 20)), int(rng.integers(0, 20)))
        cv2.rectangle(img, corner, (int(rng.integers(20, 32)), int(rng.integers(20, 32))), tuple(int(v) for v in rng.integers(0, 255, 3)), 1)
        if defect:
            cv2.line(img, (2, 30), (30, 2), (255, 255, 255), 2)
        return img

    for i in range(24):
        cv2.imwrite(str(root / f"train/good/{i:03d}.png"), draw())
    for i in range(4):
        cv2.imwrite(str(root / f"test/good/{i:03d}.png"), draw())
        cv2.imwrite(str(root / f"test/dent/{i:03d}.png"), draw(True))
    return root


def log_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["skipganomaly", "ocrgan"])
def test_gan_generators_learn_to_beat_the_mean_image(shapes: Path, tmp_path: Path, kind: str) -> None:
    cfg = load_config("cpu-budget", GAN + KINDS[kind] + ["train.epochs=20"])
    run = tmp_path / kind
    train_mod.train(cfg, shapes, run)
    log = log_of(run)
    assert all({"content", "ref_zero", "ref_mean"} <= set(r) for r in log)
    assert log[0]["ref_mean"] < log[0]["ref_zero"]  # the mean image is the harder reference
    summary = yaml.safe_load((run / "train_summary.yaml").read_text())
    assert summary["beats_mean_image"] is True, summary["line"]
    assert summary["content"] < summary["ref_mean"] and "beat the mean training image" in summary["line"]


def test_a_generator_that_did_not_learn_is_reported(shapes: Path, tmp_path: Path) -> None:
    cfg = load_config("cpu-budget", GAN + KINDS["skipganomaly"] + ["train.epochs=1", "train.lr=0.00001"])
    run = tmp_path / "slow"
    train_mod.train(cfg, shapes, run)
    summary = yaml.safe_load((run / "train_summary.yaml").read_text())
    assert summary["beats_mean_image"] is False and "did NOT beat" in summary["line"]
    calibrate(run, ThresholdPolicy(), device="cpu")
    from edgefreq.evaluate import evaluate

    report = evaluate(run, shapes, run / "eval", device="cpu")
    assert report["generator_beats_mean_image"] is False
    assert any("did not beat the mean training image" in w for w in report["warnings"])


def test_d_step_reuses_the_reconstruction_and_reinitializes_a_collapsed_d(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = OCRGAN.reconstruct
    monkeypatch.setattr(OCRGAN, "reconstruct", lambda self, bands: calls.append(self.training) or real(self, bands))
    cfg = load_config("cpu-budget", GAN + KINDS["ocrgan"] + ["train.epochs=1"])
    train_mod.train(cfg, shapes, tmp_path / "once")
    steps = 19 // 4  # 19 training images (5 held out), batch 4, drop_last
    assert calls.count(True) == steps  # one generator forward per step: the D step reuses it
    assert log_of(tmp_path / "once")[0]["d_reinit"] == 0
    monkeypatch.setattr(train_mod, "D_COLLAPSE", 1e9)  # every D loss "collapsed": D re-initialized every step
    reinits = []
    real_reinit = OCRGAN.reinit_discriminator
    monkeypatch.setattr(OCRGAN, "reinit_discriminator", lambda self: reinits.append(1) or real_reinit(self))
    train_mod.train(cfg, shapes, tmp_path / "reinit")
    assert log_of(tmp_path / "reinit")[0]["d_reinit"] == steps == len(reinits)
    model = OCRGAN(cfg.model, 3, 2, (32, 32))
    before = [p.clone() for p in model.netd.parameters()]
    model.reinit_discriminator()
    assert not all(torch.equal(a, b) for a, b in zip(before, model.netd.parameters()))


def test_warmup_epochs_train_only_the_content_loss(shapes: Path, tmp_path: Path) -> None:
    cfg = load_config("cpu-budget", GAN + KINDS["ocrgan"] + ["train.epochs=2", "train.warmup_epochs=1"])
    run = tmp_path / "warm"
    train_mod.train(cfg, shapes, run)
    first, second = log_of(run)
    assert first["warmup"] is True and "d_total" not in first
    assert second["warmup"] is False and "d_total" in second


def test_ema_weights_are_the_model_and_resume_exactly(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = load_config("cpu-budget", WFDL + ["train.ema=0.5", "train.epochs=3"])
    straight = tmp_path / "straight"
    train_mod.train(cfg, shapes, straight)
    final = load_file(str(straight / "model.safetensors"))
    ema = load_file(str(straight / "checkpoint" / "ema.safetensors"))
    raw = load_file(str(straight / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(final[k], ema[f"module.{k}"]) for k in final)
    assert not all(torch.equal(final[k], raw[k]) for k in final if final[k].is_floating_point())
    broken = tmp_path / "broken"
    train_interrupted_then_resumed(monkeypatch, cfg, shapes, broken)
    again = load_file(str(broken / "model.safetensors"))
    assert all(torch.allclose(final[k], again[k], atol=1e-6) for k in final)


def test_train_seed_changes_the_init_not_the_split(shapes: Path, tmp_path: Path) -> None:
    runs = {}
    for name, extra in {"a": ["train.seed=1"], "b": ["train.seed=2"], "c": ["train.seed=1", "data.split_seed=5"]}.items():
        runs[name] = tmp_path / name
        train_mod.train(load_config("cpu-budget", WFDL + ["train.epochs=1", *extra]), shapes, runs[name])
    split = {k: yaml.safe_load((r / "split.yaml").read_text())["calibration"] for k, r in runs.items()}
    assert split["a"] == split["b"] and split["a"] != split["c"]
    wa, wb = load_file(str(runs["a"] / "model.safetensors")), load_file(str(runs["b"] / "model.safetensors"))
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_thread_default_leaves_half_the_cpus() -> None:
    before = torch.get_num_threads()
    try:
        assert set_threads(0) == default_threads() == max(1, len(__import__("os").sched_getaffinity(0)) // 2)
        assert torch.get_num_threads() == default_threads()
        assert set_threads(3) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_rescoring_a_trained_run_without_training(shapes: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_mod.train(load_config("cpu-budget", WFDL), shapes, run)
    weights = (run / "model.safetensors").read_bytes()
    first = calibrate(run, ThresholdPolicy(), device="cpu")
    second = calibrate(run, ThresholdPolicy(), device="cpu", overrides=["model.map=msgms", "model.normalize=pixel", "model.score_reduce=max"])
    assert (run / "model.safetensors").read_bytes() == weights
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["map"] == "msgms"
    assert first.threshold != second.threshold
    validation = yaml.safe_load((run / "validation.yaml").read_text())
    assert 0.0 <= validation["forged_auroc"] <= 1.0 and validation["images"] == 5
    assert 0.0 <= validation["forged_escape_rate"] <= 1.0
    menu = {row["policy"]: row for row in validation["policies"]}  # every compared policy's operating point on forgeries
    assert list(menu) == [p.describe() for p in COMPARED_POLICIES]
    assert menu[second.policy.describe()]["threshold"] == pytest.approx(second.threshold)
    assert menu[second.policy.describe()]["forged_escape_rate"] == validation["forged_escape_rate"]
    assert menu["max + 0.1 * (max - min)"]["calibration_false_reject_rate"] == 0.0  # above every calibration score
    escapes = [menu[p]["forged_escape_rate"] for p in ("max + 0.1 * (max - min)", "max + 0.0 * (max - min)")]
    assert escapes[0] >= escapes[1]  # a higher threshold lets through at least as many forgeries
    assert validation["scoring"]["map"] == "msgms"
    model, cfg = load_run(run)
    assert cfg.model.normalize == "pixel" and not torch.all(model.head.pixel_std == 1)
    with pytest.raises(UserError, match=r"model\.ngf.*needs a new training run"):
        calibrate(run, ThresholdPolicy(), device="cpu", overrides=["model.ngf=16"])
    # a config edited by hand after calibration: the statistics are stale, and say so
    text = (run / "config.yaml").read_text().replace("map: msgms", "map: ssim")
    (run / "config.yaml").write_text(text)
    with pytest.raises(UserError, match="fitted for model.map=msgms"):
        load_run(run)
    (run / STATS_FILE).unlink()
    with pytest.raises(UserError, match="needs the per-pixel statistics"):
        load_run(run)
    # training again with only a scoring key changed is refused with the command that rescores
    with pytest.raises(UserError, match="edgefreq calibrate .* --set model.map=sq"):
        train_mod.train(load_config("cpu-budget", WFDL + ["model.normalize=pixel", "model.score_reduce=max"]), shapes, run)
    with pytest.raises(UserError, match=r"another config \(model.wfdl_width\)"):
        train_mod.train(load_config("cpu-budget", WFDL + ["model.wfdl_width=0.5", "model.map=ssim", "model.normalize=pixel", "model.score_reduce=max"]), shapes, run)


def test_eval_warnings() -> None:
    base = {"image_auroc": 0.7, "escape_rate": 0.3, "generator_beats_mean_image": True}
    assert warnings_for(base) == []
    assert "below chance" in warnings_for({**base, "image_auroc": 0.42})[0]
    assert "every defect escapes" in warnings_for({**base, "escape_rate": 1.0})[0]
    assert warnings_for({**base, "generator_beats_mean_image": None}) == []


def edgefreq_cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefreq", *argv], capture_output=True, text=True, env=env)


def test_config_and_run_folder_errors_are_one_line(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    for bad in ("train.betas=x", "train.epochs=true", "train.device=tpu", "train.betas=[0.5, x]"):
        proc = edgefreq_cli("train", "--data", str(shapes), "--out", str(out), "--set", "train.epochs=1", "--set", bad)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (bad, proc.stderr)
        assert not (out / "config.yaml").exists(), bad  # nothing written: the corrected rerun is not refused
    run = tmp_path / "run"
    train_mod.train(load_config("cpu-budget", WFDL + ["train.epochs=1"]), shapes, run)
    for argv in (["calibrate", str(run), "--batch", "0"], ["eval", str(run), "--data", str(shapes), "--batch", "0"]):
        proc = edgefreq_cli(*argv)
        assert proc.returncode == 2 and "--batch must be at least 1" in proc.stderr, proc.stderr
    (run / "split.yaml").write_text("root: 3\ntrain: nope\n")
    proc = edgefreq_cli("calibrate", str(run))
    assert proc.returncode == 2 and "not a split file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # a garbage checkpoint: one line naming it, not a traceback
    ckpt = tmp_path / "ckpt"
    train_mod.train(load_config("cpu-budget", WFDL), shapes, ckpt)
    (ckpt / "model.safetensors").unlink()
    (ckpt / "checkpoint" / "model.safetensors").write_bytes(b"garbage")
    proc = edgefreq_cli("train", "--data", str(shapes), "--out", str(ckpt), "--config", "cpu-budget", *sum((["--set", o] for o in WFDL), []))
    assert proc.returncode == 2 and "checkpoint is damaged" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_verb_whose_extra_is_missing_names_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'sklearn':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    proc = edgefreq_cli("eval", "--help", env=env)
    assert proc.returncode == 2 and "pip install 'edgefreq[eval]'" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_denoise_trains_the_clean_image_from_a_forged_copy(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    from edgefreq.models.wfdl import WFDL as Autoencoder

    seen = []
    real = Autoencoder.losses_g
    monkeypatch.setattr(Autoencoder, "losses_g", lambda self, bands, clean=None: seen.append((self.target(bands), clean)) or real(self, bands, clean))
    train_mod.train(load_config("cpu-budget", WFDL + ["train.epochs=1", "model.denoise=true"]), shapes, tmp_path / "denoise")
    assert seen and all(clean is not None and not torch.equal(x, clean) for x, clean in seen)
    seen.clear()
    train_mod.train(load_config("cpu-budget", WFDL + ["train.epochs=1"]), shapes, tmp_path / "plain")
    assert seen and all(clean is None for _, clean in seen)
    with pytest.raises(UserError, match="nothing to denoise"):
        load_config("variation", ["model.denoise=true"])
