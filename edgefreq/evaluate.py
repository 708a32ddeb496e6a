"""Evaluation (`edgefreq eval RUN --data DIR`, edgefreq/cli/eval.py): image and pixel AUROC (defect =
positive), per-defect table, false-reject and escape rates at the calibrated threshold, figures, and
a JSON + Markdown report.

Nothing here feeds back into training or calibration: the test set is only measured.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from edgefreq import plots
from edgefreq.calibration import Calibration, false_reject_rate, is_nok
from edgefreq.data import load_image, load_mask, scan_dataset
from edgefreq.errors import UserError
from edgefreq.heatmap import overlay
from edgefreq.rundir import generator_line, load_run
from edgefreq.scoring import score_paths


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC with defect = positive; None when only one class is present."""
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


def warnings_for(report: dict) -> list[str]:
    """What a reader must not take as a result like any other."""
    out = []
    if report["image_auroc"] is not None and report["image_auroc"] < 0.5:
        out.append(f"image AUROC {report['image_auroc']:.3f} is below chance: the score ranks defects BELOW good parts")
    if report["escape_rate"] == 1.0:
        out.append("every defect escapes at the calibrated threshold: this model rejects nothing on this data")
    if report["generator_beats_mean_image"] is False:
        out.append("the generator did not beat the mean training image on its training loss")
    return out


def evaluate(run: Path, data: Path, out: Path, batch: int = 16, device: str = "auto") -> dict:
    run = Path(run)
    if batch < 1:
        raise UserError(f"--batch must be at least 1, got {batch}")
    calib_path = run / "calibration.yaml"
    if not calib_path.exists():
        raise UserError(f"{run}: not calibrated yet: run `edgefreq calibrate {run}` first")
    calibration = Calibration.load(calib_path)
    model, cfg = load_run(run, device)
    index = scan_dataset(data)
    if not index.test:
        raise UserError(f"{data}: no test images (test/good and test/<defect>) to evaluate on")
    spec = cfg.preprocess
    beats, check_line = generator_line(run)
    start = time.perf_counter()
    paths = [s.path for s in index.test]
    scores, maps, geometry = score_paths(model, spec, paths, batch, desc="evaluating")
    seconds = time.perf_counter() - start
    labels = np.array([s.label for s in index.test])
    defects = np.array([s.defect for s in index.test])
    masks = np.stack([load_mask(s.mask, spec, shape, pose) for s, (shape, pose) in zip(index.test, geometry)])
    has_mask = np.array([s.mask is not None or s.label == 0 for s in index.test])
    threshold = calibration.threshold
    nok = is_nok(scores, threshold)

    def pixel_auroc(select: np.ndarray) -> float | None:
        select = select & has_mask
        m = masks[select].ravel()
        return float(roc_auc_score(m, maps[select].ravel())) if 0 < m.sum() < m.size else None

    per_defect = []
    for name in sorted(set(defects[labels == 1])):
        sel = (defects == name) | (labels == 0)
        per_defect.append(
            {
                "defect": name,
                "images": int((defects == name).sum()),
                "image_auroc": auroc(labels[sel], scores[sel]),
                "pixel_auroc": pixel_auroc(sel),
                "escape_rate": float((~nok[defects == name]).mean()),
            }
        )
    report = {
        "run": str(run),
        "data": str(Path(data).resolve()),
        "model": cfg.model.kind,
        "scoring": {k: getattr(cfg.model, k) for k in ("map", "map_sigma", "normalize", "std_floor", "score_reduce", "lambda_score")},
        "epochs": cfg.train.epochs,
        "generator_beats_mean_image": beats,
        "generator_check": check_line,
        "input": list(spec.size),
        "levels": spec.levels,
        "images": {"good": int((labels == 0).sum()), "defect": int((labels == 1).sum())},
        "image_auroc": auroc(labels, scores),
        "pixel_auroc": pixel_auroc(np.ones(len(labels), bool)),
        "threshold": float(threshold),
        "threshold_policy": calibration.policy.describe(),
        "calibration_false_reject_rate": float(calibration.false_reject_rate),
        "false_reject_rate": false_reject_rate(scores[labels == 0], threshold) if (labels == 0).any() else None,
        "escape_rate": float((~nok[labels == 1]).mean()) if (labels == 1).any() else None,
        "per_defect": per_defect,
        "scoring_seconds": round(seconds, 2),
        "masks": int(sum(s.mask is not None for s in index.test)),
        "scores": [{"path": str(p.relative_to(index.root)), "label": int(l), "score": float(s)} for p, l, s in zip(paths, labels, scores)],
    }
    report["warnings"] = warnings_for(report)
    write_report(report, out, scores, labels, maps, paths, threshold)
    return report


def write_report(report: dict, out: Path, scores, labels, maps, paths, threshold: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plots.histogram(scores, labels, threshold, out / "scores.png")
    if report["image_auroc"] is not None:
        plots.roc(scores, labels, report["image_auroc"], out / "roc.png")
    vmax = float(np.quantile(maps, 0.999))
    order = np.argsort(-scores)[:24]
    tiles = [overlay(load_image(paths[i]), maps[i], 0.0, vmax, at_map_size=True) for i in order]  # one scale for all
    captions = [f"{'D' if labels[i] else 'G'} {scores[i]:.3g}" for i in order]
    plots.montage(tiles, captions, out / "heatmaps.png")
    (out / "report.md").write_text(markdown(report))


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown(r: dict) -> str:
    lines = [
        f"# Evaluation of `{r['run']}`",
        "",
        f"Model {r['model']}, {r['epochs']} epochs (the last epoch), input {r['input'][0]}x{r['input'][1]}, "
        f"{r['levels']} band(s). Data `{r['data']}`: {r['images']['good']} good, {r['images']['defect']} defect test images.",
        "",
        f"Score: map {r['scoring']['map']}, sigma {r['scoring']['map_sigma']}, normalize {r['scoring']['normalize']}, "
        f"{r['scoring']['score_reduce']} of the map. Generator check: {r['generator_check']}.",
        "",
        *[f"- **warning: {w}**" for w in r["warnings"]],
        f"- image AUROC (defect = positive): **{fmt(r['image_auroc'])}**",
        f"- pixel AUROC: **{fmt(r['pixel_auroc'])}**" + ("" if r["masks"] else " (the data set has no masks)"),
        f"- threshold {r['threshold']:.5g} ({r['threshold_policy']}); false-reject rate on calibration images "
        f"{r['calibration_false_reject_rate']:.3f}",
        f"- at that threshold on the test set: false-reject rate {fmt(r['false_reject_rate'])}, escape rate {fmt(r['escape_rate'])}",
        "",
        "| defect | images | image AUROC | pixel AUROC | escape rate |",
        "|---|---|---|---|---|",
    ]
    for d in r["per_defect"]:
        lines.append(f"| {d['defect']} | {d['images']} | {fmt(d['image_auroc'])} | {fmt(d['pixel_auroc'])} | {d['escape_rate']:.3f} |")
    lines += ["", "Figures: `scores.png` (histogram), `roc.png`, `heatmaps.png` (highest scores first; D = defect, G = good).", ""]
    return "\n".join(lines)
