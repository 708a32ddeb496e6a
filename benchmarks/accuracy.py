"""Train, calibrate and evaluate a plan of configurations with the honest protocol; one row each.

    python benchmarks/accuracy.py benchmarks/plans/cpu-budget.yaml [--only NAME ...] [--runs runs/accuracy]

A plan lists runs: name, dataset (a folder under ../shared/data, under ../derived-data (made by
benchmarks/make_random_pose.py), or a path), config (shipped name
or YAML), overrides (`section.key=value`), seeds. Each (name, seed) is trained for the config's
fixed epochs (the last epoch is the model), calibrated on its held-out good images, evaluated on
the test set once. A run whose config differs from a finished run's only in scoring keys
(models.SCORING_KEYS: map, normalization, reduction, smoothing; training never reads them) is
calibrated and evaluated on that run's weights instead of training the same model again, so the
scores are compared on the very same model. Finished runs are recorded in
benchmarks/results/RESULTS.jsonl (RESULTS: the plan's `results`, default "accuracy") and skipped
next time (an interrupted run resumes from its checkpoint); RESULTS.md is rebuilt from the JSONL
after every run, with RESULTS-header.md on top, a mean +- std table over seeds and, per row, the
image AUROC's bootstrap 95 % interval (2000 stratified resamples of the test images).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.metrics import roc_auc_score

from edgefreq.calibrate import VALIDATION_FILE, calibrate
from edgefreq.calibration import ThresholdPolicy
from edgefreq.config import load_yaml, to_dict, write_yaml
from edgefreq.evaluate import evaluate
from edgefreq.models import build_model, count_parameters, flops
from edgefreq.rundir import STATS_FILE, RunConfig, load_config, read_config, training_key
from edgefreq.train import train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"
DERIVED_DATA = ROOT.parent / "derived-data"  # made by scripts in benchmarks/ (make_random_pose.py), never in the repo
BOOTSTRAP = 2000
JSONL = RESULTS / "accuracy.jsonl"  # set by main from the plan's `results`


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.machine()} x{torch.get_num_threads()} threads"


def done_keys() -> set[tuple[str, str, int]]:
    if not JSONL.exists():
        return set()
    return {(r["dataset"], r["name"], r["seed"]) for r in map(json.loads, JSONL.read_text().splitlines())}


def trained_twin(cfg: RunConfig, data: Path, runs: Path, out: Path) -> Path | None:
    """A finished run in `runs` trained on `data` with the same training config, if any."""
    for weights in sorted(runs.glob("*/model.safetensors")):
        other = weights.parent
        if other == out or Path(load_yaml(other / "split.yaml")["root"]) != data.resolve():
            continue
        if training_key(read_config(other)) == training_key(cfg):
            return other
    return None


def run_one(entry: dict, seed: int, runs: Path) -> dict:
    data = Path(entry["dataset"])
    if not (data.is_absolute() or data.exists()):
        data = SHARED_DATA / data if (SHARED_DATA / data).exists() or not (DERIVED_DATA / data).exists() else DERIVED_DATA / data
    overrides = list(entry.get("overrides", [])) + [f"train.seed={seed}"]
    cfg = load_config(entry["config"], overrides)
    out = runs / f"{data.name}-{entry['name']}-seed{seed}"
    twin = None if (out / "model.safetensors").exists() else trained_twin(cfg, data, runs, out)
    t0 = time.perf_counter()
    if twin is None:
        train(cfg, data, out)
    else:
        shutil.copytree(twin, out, ignore=shutil.ignore_patterns("eval", "calibration.yaml", STATS_FILE, VALIDATION_FILE, "checkpoint*"), dirs_exist_ok=True)
        cfg = replace(cfg, preprocess=read_config(twin).preprocess)  # the twin's, with what training fitted (the reference pose)
        write_yaml(out / "config.yaml", to_dict(cfg), "config")
    train_s = time.perf_counter() - t0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    cal = calibrate(out, ThresholdPolicy(), device=cfg.train.device)
    report = evaluate(out, data, out / "eval", device=cfg.train.device)
    spec = cfg.preprocess
    model = build_model(cfg.model, spec.channels, spec.levels, spec.size)
    command = " ".join(
        ["edgefreq train", f"--data {data}", f"--config {entry['config']}"] + [f"--set {shlex.quote(o)}" for o in overrides]
    )
    return {
        "name": entry["name"],
        "kind": cfg.model.kind,
        "scoring": report["scoring"],
        "generator_beats_mean_image": report["generator_beats_mean_image"],
        "image_auroc_ci95": bootstrap_ci(report),
        "validation_forged_auroc": load_yaml(out / VALIDATION_FILE)["forged_auroc"],
        "validation_forged_escape": load_yaml(out / VALIDATION_FILE)["forged_escape_rate"],
        "dataset": data.name,
        "config": entry["config"],
        "overrides": overrides,
        "seed": seed,
        "epochs": cfg.train.epochs,
        "image_auroc": report["image_auroc"],
        "pixel_auroc": report["pixel_auroc"],
        "false_reject_rate": report["false_reject_rate"],
        "escape_rate": report["escape_rate"],
        "calibration_false_reject_rate": cal.false_reject_rate,
        "per_defect": {d["defect"]: d["image_auroc"] for d in report["per_defect"]},
        "params": count_parameters(model),
        "gflops": flops(model, spec.channels, spec.size, spec.levels) / 1e9,
        "machine": machine(),
        "train_seconds": round(train_s, 1),
        "weights_from": twin.name if twin else None,
        "train_seconds_logged": round(sum(r["seconds"] for r in log), 1),
        "command": command,
        "torch": torch.__version__,
    }


def bootstrap_ci(report: dict, seed: int = 0) -> list[float] | None:
    """The image AUROC's 95 % bootstrap interval: good and defect test images resampled separately."""
    labels = np.array([s["label"] for s in report["scores"]])
    scores = np.array([s["score"] for s in report["scores"]])
    if not 0 < labels.sum() < len(labels):
        return None
    rng = np.random.default_rng(seed)
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    values = []
    for _ in range(BOOTSTRAP):
        idx = np.concatenate([rng.choice(good, good.size), rng.choice(bad, bad.size)])
        values.append(roc_auc_score(labels[idx], scores[idx]))
    return [float(v) for v in np.quantile(values, [0.025, 0.975])]


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summary_table(rows: list[dict]) -> list[str]:
    """Mean +- std over seeds per (dataset, run)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["name"]), []).append(r)
    lines = ["## Mean over seeds", "",
             "| dataset | run | seeds | image AUROC mean +- std | min - max | false-reject (test good) | escape | generator beat the mean image | validation (forged) AUROC |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (dataset, name), group in groups.items():
        auc = np.array([r["image_auroc"] for r in group if r["image_auroc"] is not None])
        if not auc.size:
            continue
        std = f" +- {auc.std(ddof=1):.3f}" if auc.size > 1 else ""
        fr = np.mean([r["false_reject_rate"] for r in group if r["false_reject_rate"] is not None])
        esc = np.mean([r["escape_rate"] for r in group if r["escape_rate"] is not None])
        beats = [r.get("generator_beats_mean_image") for r in group]
        beat = "n/a" if all(b is None for b in beats) else f"{sum(bool(b) for b in beats)} of {len(beats)}"
        val = [r["validation_forged_auroc"] for r in group if r.get("validation_forged_auroc") is not None]
        val = f"{np.mean(val):.3f}" if val else "n/a"
        lines.append(f"| {dataset} | {name} | {len(group)} | {auc.mean():.3f}{std} | {auc.min():.3f} - {auc.max():.3f} | {fr:.3f} | {esc:.3f} | {beat} | {val} |")
    return lines + [""]


def write_markdown(header: str) -> None:
    rows = [json.loads(line) for line in JSONL.read_text().splitlines()] if JSONL.exists() else []
    lines = [header.rstrip(), ""] + summary_table(rows) + ["## Runs", "",
             "| dataset | run | seed | epochs | image AUROC | 95 % CI | pixel AUROC | false-reject (test good) | escape | params | GFLOPs/frame | machine | training (sum of logged epochs) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = f"weights of {r['weights_from']}" if r.get("weights_from") else f"{r['train_seconds_logged'] / 60:.1f} min"
        ci = r.get("image_auroc_ci95")
        ci = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a"
        lines.append(
            f"| {r['dataset']} | {r['name']} | {r['seed']} | {r['epochs']} | {fmt(r['image_auroc'])} | {ci} | {fmt(r['pixel_auroc'])} | "
            f"{fmt(r['false_reject_rate'])} | {fmt(r['escape_rate'])} | {r['params'] / 1e6:.2f} M | {r['gflops']:.3f} | {r['machine']} | {wall} |"
        )
    lines += ["", "## Commands", ""]
    for r in rows:
        lines.append(f"- {r['name']} seed {r['seed']}: `{r['command']}` then `edgefreq calibrate` and `edgefreq eval` (torch {r['torch']})")
    JSONL.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("plan", type=Path)
    p.add_argument("--only", nargs="*", help="run only these names")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "accuracy", help="where run folders go")
    args = p.parse_args(argv)
    plan = yaml.safe_load(args.plan.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    global JSONL
    name = plan.get("results", "accuracy")
    JSONL = RESULTS / f"{name}.jsonl"
    head = RESULTS / f"{name}-header.md"
    header = head.read_text() if head.exists() else f"# Accuracy ({name})"
    for entry in plan["runs"]:
        if args.only and entry["name"] not in args.only:
            continue
        for seed in entry.get("seeds", [1]):
            if (Path(entry["dataset"]).name, entry["name"], seed) in done_keys():
                print(f"skip {entry['name']} seed {seed}: already recorded", file=sys.stderr)
                continue
            row = run_one(entry, seed, args.runs)
            with open(JSONL, "a") as f:
                f.write(json.dumps(row) + "\n")
            write_markdown(header)
            print(f"{row['name']} seed {seed}: image AUROC {fmt(row['image_auroc'])}, pixel {fmt(row['pixel_auroc'])}, "
                  f"{row['train_seconds'] / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
