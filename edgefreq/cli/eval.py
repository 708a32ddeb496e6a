"""`edgefreq eval RUN --data DIR`: measure a calibrated run on a test set (edgefreq.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgefreq.cli.options import add_batch, add_device
from edgefreq.evaluate import evaluate, fmt


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="a trained and calibrated run folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder with test/good and test/<defect>")
    p.add_argument("--out", type=Path, help="report folder (default RUN/eval)")
    add_batch(p, 16, "test images scored at once")
    add_device(p, "the model scores the images")


def run(args: argparse.Namespace) -> int:
    out = args.out or args.run / "eval"
    r = evaluate(args.run, args.data, out, args.batch, args.device)
    print(f"image AUROC {fmt(r['image_auroc'])}  pixel AUROC {fmt(r['pixel_auroc'])}  "
          f"false-reject {fmt(r['false_reject_rate'])}  escape {fmt(r['escape_rate'])}")
    print(f"generator check: {r['generator_check']}")
    for w in r["warnings"]:
        print(f"warning: {w}")
    print(f"report: {out / 'report.md'}")
    return 0
