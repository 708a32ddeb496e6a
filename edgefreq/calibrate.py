"""`edgefreq calibrate RUN`: score the held-out good images, store the normal range and threshold.

The calibration images come from the run's split (good images the model never trained on);
`--data` scores another folder of good images instead (e.g. fresh images from the line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgefreq.calibration import KINDS, Calibration, ThresholdPolicy
from edgefreq.data import scan_dataset
from edgefreq.errors import UserError
from edgefreq.rundir import load_run, read_split
from edgefreq.scoring import score_paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="a trained run folder")
    p.add_argument("--policy", choices=KINDS, default="max_margin", help="threshold policy (default max_margin)")
    p.add_argument("--q", type=float, default=0.99, help="quantile for --policy quantile (default 0.99)")
    p.add_argument("--margin", type=float, default=0.1, help="margin for --policy max_margin, as a fraction of max-min (default 0.1)")
    p.add_argument("--k", type=float, default=3.0, help="k for --policy mean_std (default 3)")
    p.add_argument("--data", type=Path, help="calibrate on this folder's train/good instead of the run's held-out images")
    p.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def calibrate(run: Path, policy: ThresholdPolicy, data: Path | None = None, batch: int = 16, device: str = "auto") -> Calibration:
    model, cfg = load_run(run, device)
    if data is not None:
        paths = scan_dataset(data).train_good
    else:
        _, _, paths = read_split(run)
    if not paths:
        raise UserError(f"{run}: no calibration images")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(f"{missing[0]}: calibration image not found (the data folder moved? pass --data)")
    scores, _, _ = score_paths(model, cfg.preprocess, paths, batch, desc="calibrating")
    calibration = Calibration.from_scores(scores, policy)
    calibration.save(run / "calibration.yaml")
    return calibration


def run(args: argparse.Namespace) -> int:
    policy = ThresholdPolicy(kind=args.policy, q=args.q, margin=args.margin, k=args.k)
    c = calibrate(args.run, policy, args.data, args.batch, args.device)
    r = c.range
    print(f"{r.count} good images: min {r.min:.5g}  median {r.median:.5g}  max {r.max:.5g}  mean {r.mean:.5g}  std {r.std:.3g}")
    print(f"threshold {c.threshold:.5g} ({policy.describe()}): false-reject rate {c.false_reject_rate:.3f} on these images")
    if c.warning:
        print(f"warning: {c.warning}")
    print(f"wrote {args.run / 'calibration.yaml'}")
    return 0
