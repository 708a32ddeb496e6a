"""Build the embedded default model that `edgefreq run` uses with no --engine.

    python scripts/make_embedded.py [--work DIR] [--epochs N]

1. writes data sets from the synthetic line (edgefreq.runtime.sources.synthetic): good frames of
   stream 0 for training and calibration; good and defective frames of stream 2 for validation
   and of stream 1 for the test, with defect masks (the frame minus the same frame rendered
   without its defect);
2. trains each candidate (CANDIDATES: the shipped `embedded` config, WFDL and the `variation`
   floor at the same size), calibrates each on the held-out good frames with every scoring setting of
   SCORINGS (map x normalization x reduction: scoring keys, so the same weights), and chooses the
   candidate + scoring with the best image AUROC on the VALIDATION stream; the test stream is
   evaluated once, for the report (benchmarks/results/embedded.md), with every candidate's
   validation AUROC;
3. exports edgefreq/embedded/default.onnx + default.yaml (the sidecar).

No third-party data: everything comes from the generator in this repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from edgefreq.calibrate import calibrate
from edgefreq.calibration import Calibration, ThresholdPolicy
from edgefreq.evaluate import evaluate
from edgefreq.export.calibration_images import calibration_paths, sample_bands
from edgefreq.export.onnx import export_onnx
from edgefreq.models.config import SCORING_KEYS
from edgefreq.rundir import RunConfig, load_config, load_run, read_config, training_key
from edgefreq.runtime.sources.synthetic import SyntheticLine
from edgefreq.train import train

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "edgefreq" / "embedded" / "default.onnx"
SIZE = (128, 128)
TRAIN_FRAMES, TEST_FRAMES = 400, 200
# candidate name -> (config, overrides)
CANDIDATES = {  # the input size is the embedded config's; `--set "preprocess.size=[64, 64]"` tries another for all
    "embedded": ("embedded", []),
    "wfdl": ("wfdl-cpu-budget", ["preprocess.size=[128, 128]", "train.epochs=40"]),
    "variation": ("variation", ["preprocess.size=[128, 128]"]),
    # the caps turn by up to 10 degrees and shift by 3 %: each candidate again with registration to the reference pose
    "embedded-register": ("embedded", ["preprocess.register=rigid"]),
    "wfdl-register": ("wfdl-cpu-budget", ["preprocess.size=[128, 128]", "train.epochs=40", "preprocess.register=rigid"]),
    "variation-register": ("variation", ["preprocess.size=[128, 128]", "preprocess.register=rigid"]),
}
SCORINGS = {
    "sq-mean": ["model.map=sq", "model.normalize=none", "model.score_reduce=mean"],
    "sq-max": ["model.map=sq", "model.normalize=none", "model.score_reduce=max"],
    "sq-max-pixel": ["model.map=sq", "model.normalize=pixel", "model.score_reduce=max"],
    "msgms-max-pixel": ["model.map=msgms", "model.normalize=pixel", "model.score_reduce=max"],
}


def write_dataset(root: Path, stream: int) -> None:
    """train/good from stream 0, test/* (with masks) from `stream`."""
    good = SyntheticLine(SIZE, seed=0, defect_rate=0.0)
    (root / "train" / "good").mkdir(parents=True)
    for i in range(TRAIN_FRAMES):
        cv2.imwrite(str(root / "train" / "good" / f"{i:04d}.png"), good.render(i, None))
    test = SyntheticLine(SIZE, seed=stream, defect_rate=0.5)
    for i in range(TEST_FRAMES):
        kind = test.defect_kind(i)
        image = test.render(i, kind)
        folder = root / "test" / (kind or "good")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
        if kind:
            mask = (np.abs(image.astype(np.int16) - test.render(i, None)).max(axis=2) > 0).astype(np.uint8) * 255
            (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "ground_truth" / kind / f"{i:04d}_mask.png"), mask)


def candidate_config(config: str, overrides: list[str], trained: Path) -> RunConfig:
    """The candidate's config; where `trained` holds an earlier build's run of the same training (the
    config's scoring keys changed since), that run's scoring keys, so its weights are kept: every
    candidate is scored again with each of SCORINGS anyway."""
    cfg = load_config(config, overrides)
    if (trained / "config.yaml").exists():
        old = read_config(trained)
        if training_key(old) == training_key(cfg):
            cfg = replace(cfg, model=replace(cfg.model, **{k: getattr(old.model, k) for k in SCORING_KEYS}))
    return cfg


def rescore(run: Path, variant: Path, overrides: list[str]) -> None:
    """A copy of `run` calibrated with other scoring keys (the same weights: training never reads them)."""
    variant.mkdir(exist_ok=True)
    for name in ("model.safetensors", "split.yaml", "train_log.jsonl", "config.yaml", "train_summary.yaml"):
        shutil.copy2(run / name, variant / name)
    calibrate(variant, ThresholdPolicy(), device="cpu", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, help="keep the data set and run here (default: a temporary folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides (every candidate)")
    p.add_argument("--out", type=Path, default=OUT, help=f"the engine to write (default {OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="edgefreq-embedded-"))
    data, val, run = work / "data", work / "val", work / "run"
    for folder, stream in ((data, 1), (val, 2)):
        if not folder.exists():
            write_dataset(folder, stream)
    chosen, val_auroc, seconds = None, {}, {}
    for name, (config, overrides) in CANDIDATES.items():
        trained = work / f"run-{name}"
        train(candidate_config(config, overrides + args.set, trained), data, trained)
        seconds[name] = sum(json.loads(line)["seconds"] for line in (trained / "train_log.jsonl").read_text().splitlines())
        for scoring, keys in SCORINGS.items():
            variant = work / f"run-{name}-{scoring}"
            rescore(trained, variant, keys)
            val_auroc[f"{name} {scoring}"] = evaluate(variant, val, variant / "eval-val", device="cpu")["image_auroc"]
            if chosen is None or val_auroc[f"{name} {scoring}"] > val_auroc[chosen]:
                chosen = f"{name} {scoring}"
    run = work / f"run-{chosen.replace(' ', '-')}"
    cal = Calibration.load(run / "calibration.yaml")
    report = evaluate(run, data, run / "eval", device="cpu")
    model, cfg = load_run(run, "cpu")
    bands = sample_bands(calibration_paths(run), cfg.preprocess)
    export = export_onnx(
        model, cfg.preprocess, cal, args.out, kind=cfg.model.kind, sample_bands=bands,
        source_run="synthetic line (scripts/make_embedded.py)", command="python scripts/make_embedded.py",
    )
    results = ROOT / "benchmarks" / "results" / "embedded.md"
    results.write_text(
        "# The embedded default model\n\n"
        f"Built by `python scripts/make_embedded.py`: candidates "
        + ", ".join(f"`{n}` ({CANDIDATES[n][0]}, trained in {t / 60:.1f} min)" for n, t in seconds.items())
        + f" on {TRAIN_FRAMES} synthetic frames (20 % held out for calibration), each calibrated with every scoring "
        "setting; chosen on a validation stream (image AUROC "
        + ", ".join(f"{k} {v:.3f}" for k, v in val_auroc.items())
        + f"): **{chosen}**. Evaluated once on {TEST_FRAMES} unseen frames of a third stream:\n\n"
        + (run / "eval" / "report.md").read_text().split("\n", 2)[2]
        + f"\nExport check: {export.check.summary()}\n"
    )
    print(f"image AUROC {report['image_auroc']:.3f}, pixel AUROC {report['pixel_auroc']:.3f}; wrote {args.out} and {results}")
    if args.work is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
