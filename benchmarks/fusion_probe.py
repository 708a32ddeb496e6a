"""Probe, before building it: does fusing the template's z-map with a reconstruction's z-map beat both?

    python benchmarks/fusion_probe.py RUN [RUN ...]      # trained runs (any reconstruction kind)

On the ELPV sets the model-free floor (`variation`: the error against the mean good image, z-scored
per pixel) beats every learned model, and the learned ones (WFDL: the error against the part's own
reconstruction, z-scored alike) see other defects than it does. This probe measures, on each run's
own split, for the sq and MSGMS maps (Gaussian-smoothed with the run's map_sigma):

    template   z(error(x, mean of the run's training images))        the floor, recomputed
    recon      z(error(x, model.restore(x)))                          the run's z-scored score
    fused-mean (template + recon) / 2                                 declared before any result
    fused-max  max(template, recon) per pixel                         declared before any result

each z-scored per pixel by the run's calibration images' maps (std floored as in ScoreHead), the
image score the max of the map. Reported for each: the test image AUROC (defect = positive) and
the validation AUROC on forged copies of the calibration images (CutPaste + CutOut, the seed
calibrate uses; every calibration score leave-one-out, each forgery under the statistics without
its clean image): the only number a choice may read. Nothing is tuned: no weight, no sigma.
Writes benchmarks/results/fusion-probe.md (rows appended per run).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from edgefreq.calibrate import VALIDATION_SEED
from edgefreq.data import ForgeConfig, forge_batch, scan_dataset
from edgefreq.kernels import decouple
from edgefreq.models.maps import error_map, separable
from edgefreq.models.score_head import pixel_stats
from edgefreq.rundir import load_run, read_split
from edgefreq.scoring import _images

OUT = Path(__file__).resolve().parent / "results" / "fusion-probe.md"
MAPS = ("sq", "msgms")
VARIANTS = ("template", "recon", "fused-mean", "fused-max")


def images(model, spec, paths) -> torch.Tensor:
    """N x C x H x W model inputs of `paths` (the normalized images, before FD), as scoring reads them."""
    return torch.cat(list(_images(model, spec, paths, 16, "reading", [])))


@torch.no_grad()
def raw_maps(model, x: torch.Tensor, reference: torch.Tensor, kind: str) -> torch.Tensor:
    out = []
    for start in range(0, len(x), 16):
        xb = x[start : start + 16]
        ref = reference[start : start + 16] if reference.shape[0] > 1 else reference.expand_as(xb)
        out.append(separable(error_map(kind, xb, ref)[:, None], model.map_taps)[:, 0])
    return torch.cat(out).double()


@torch.no_grad()
def restored(model, spec, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.restore(decouple(x[s : s + 16], spec.levels, "torch", spec.clip_high)) for s in range(0, len(x), 16)])


def fuse(variant: str, template: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    if variant == "template":
        return template
    if variant == "recon":
        return recon
    if variant == "fused-mean":
        return (template + recon) / 2
    return torch.maximum(template, recon)


def auroc(good: np.ndarray, bad: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(good)), np.ones(len(bad))], np.r_[good, bad]))


def probe(run: Path) -> list[str]:
    model, cfg = load_run(run, "cpu", stats=False)
    spec = cfg.preprocess
    root, train_paths, calib_paths = read_split(run)
    index = scan_dataset(root)
    test_paths = [s.path for s in index.test]
    labels = np.array([s.label for s in index.test])
    start = time.perf_counter()
    mean_image = images(model, spec, train_paths).double().mean(0, keepdim=True).float()
    calib = images(model, spec, calib_paths)
    forged = forge_batch(calib, cfg.forge if cfg.forge.active else ForgeConfig(), torch.Generator().manual_seed(VALIDATION_SEED))
    test = images(model, spec, test_paths)
    recs = {name: restored(model, spec, x) for name, x in (("calib", calib), ("forged", forged), ("test", test))}
    rows = []
    for kind in MAPS:
        z = {}
        for ref_name in ("template", "recon"):
            ref = {name: mean_image if ref_name == "template" else recs[name] for name in recs}
            c = raw_maps(model, calib, ref["calib"], kind)
            f = raw_maps(model, forged, ref["forged"], kind)
            t = raw_maps(model, test, ref["test"], kind)
            loo_mean, loo_std, mean, std = pixel_stats(c, cfg.model.std_floor)
            # calibration map i and forgery i under the statistics without image i; the test under all of them
            z[ref_name] = ((c - loo_mean) / loo_std, (f - loo_mean) / loo_std, (t - mean) / std)
        for variant in VARIANTS:
            c, f, t = (fuse(variant, z["template"][k], z["recon"][k]).flatten(1).amax(1).numpy() for k in range(3))
            test_auroc = auroc(t[labels == 0], t[labels == 1])
            rows.append(
                f"| {root.name} | {run.name} | {cfg.model.kind} | {kind} | {variant} | {test_auroc:.3f} | {auroc(c, f):.4f} |"
            )
    print(f"{run}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+")
    args = p.parse_args()
    torch.set_num_threads(1)
    if not OUT.exists():
        OUT.write_text(
            "# Fusion probe: the template's z-map with a reconstruction's (benchmarks/fusion_probe.py)\n\n"
            f"Machine: CPU {platform.machine()}, 1 torch thread, torch {torch.__version__}. Score: max of the map; "
            "z-scored per pixel by the run's calibration images; validation: forged copies of them (leave-one-out).\n\n"
            "| data set | run | kind | map | variant | test image AUROC | validation (forged) AUROC |\n|---|---|---|---|---|---|---|\n"
        )
    for run in args.runs:
        rows = probe(run)
        print("\n".join(rows))
        with OUT.open("a") as fh:
            fh.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
