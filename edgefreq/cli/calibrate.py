"""`edgefreq calibrate RUN`: the normal range and threshold of a trained run (edgefreq.calibrate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgefreq.calibrate import VALIDATION_FILE, calibrate
from edgefreq.calibration import KINDS, ThresholdPolicy
from edgefreq.cli.options import add_batch, add_device
from edgefreq.config import load_yaml
from edgefreq.models import SCORING_KEYS
from edgefreq.rundir import STATS_FILE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="a trained run folder")
    p.add_argument("--policy", choices=KINDS, default="max_margin", help="threshold policy (default max_margin)")
    p.add_argument("--q", type=float, default=0.99, help="quantile for --policy quantile (default 0.99)")
    p.add_argument("--margin", type=float, default=0.1, help="margin for --policy max_margin, as a fraction of max-min (default 0.1)")
    p.add_argument("--k", type=float, default=3.0, help="k for --policy mean_std (default 3)")
    p.add_argument("--data", type=Path, help="calibrate on this folder's train/good instead of the run's held-out images")
    p.add_argument("--extra-good", type=Path, action="append", default=[], metavar="FOLDER",
                   help="also calibrate on FOLDER/train/good (e.g. operator feedback: false rejects from `edgefreq run --feedback`); repeatable")
    p.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                   help=f"change a scoring key of the trained run ({', '.join(SCORING_KEYS)}; a run with model.segment keeps its map and map_sigma), e.g. --set model.map=msgms")
    add_batch(p, 16, "calibration images scored at once")
    add_device(p, "the model scores the images")


def run(args: argparse.Namespace) -> int:
    policy = ThresholdPolicy(kind=args.policy, q=args.q, margin=args.margin, k=args.k)
    c = calibrate(args.run, policy, args.data, args.batch, args.device, args.set, args.extra_good)
    r = c.range
    print(f"{r.count} good images (leave-one-out scores): min {r.min:.5g}  median {r.median:.5g}  max {r.max:.5g}  mean {r.mean:.5g}  std {r.std:.3g}")
    print(f"threshold {c.threshold:.5g} ({policy.describe()}): false-reject rate {c.false_reject_rate:.3f} on these images")
    if c.warning:
        print(f"warning: {c.warning}")
    validation = load_yaml(args.run / VALIDATION_FILE)
    auroc = validation["forged_auroc"]
    if auroc is None:
        print("validation AUROC on forged anomalies skipped: it needs scikit-learn (pip install 'edgefreq[eval]')")
    else:
        print(f"validation: image AUROC {auroc:.3f} of good vs forged copies of the calibration images (no test image used)")
    print(f"validation: the threshold lets {validation['forged_escape_rate']:.1%} of the forged copies through")
    print(f"wrote {args.run / 'calibration.yaml'}, {args.run / STATS_FILE} and {args.run / VALIDATION_FILE}")
    return 0
