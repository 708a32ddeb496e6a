"""What each threshold policy would do on the line: false rejects and escapes on the test set for
run folders that are trained, calibrated and evaluated (the accuracy driver leaves them in its
--runs folder). Every policy is computed from the stored normal range, never fitted to the test
set, and all are shown: the choice is the line's (cost of a false reject vs an escape).

    python benchmarks/operating_points.py runs/accuracy/mvtec_bottle-full-ngf16-max-score-seed* \
        --out benchmarks/results/operating-points.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgefreq.calibration import COMPARED_POLICIES, Calibration, false_reject_rate, is_nok
from edgefreq.calibrate import VALIDATION_FILE
from edgefreq.config import load_yaml
from edgefreq.errors import UserError

def operating_points(run: Path) -> list[dict]:
    """One row per policy: threshold, false-reject rate (test good) and escape rate (test defects)."""
    calibration = Calibration.load(run / "calibration.yaml")
    report = json.loads((run / "eval" / "report.json").read_text())
    scores = np.array([s["score"] for s in report["scores"]])
    labels = np.array([s["label"] for s in report["scores"]])
    rows = []
    validation = {row["policy"]: row for row in load_yaml(run / VALIDATION_FILE).get("policies", [])} if (run / VALIDATION_FILE).exists() else {}
    for policy in COMPARED_POLICIES:
        threshold = policy.threshold(calibration.range)
        forged = validation.get(policy.describe(), {}).get("forged_escape_rate")
        rows.append({
            "policy": policy.describe(),
            "threshold": threshold,
            "forged_escape_rate": forged,  # what calibration's validation saw at this policy, no test image
            "false_reject_rate": false_reject_rate(scores[labels == 0], threshold),
            "escape_rate": float(np.mean(~is_nok(scores[labels == 1], threshold))),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+", help="evaluated run folders")
    p.add_argument("--out", type=Path, help="Markdown file to write (default: print)")
    args = p.parse_args(argv)
    lines = ["# Operating points of the threshold policies", "",
             "`python benchmarks/operating_points.py " + " ".join(r.name for r in args.runs) + "` (run folders of the accuracy driver);",
             "thresholds from each run's calibration (held-out good training images), rates on its test set.", "",
             "The validation column is calibration's (RUN/validation.yaml: forged copies of the calibration images, no test image);",
             "n/a for runs calibrated before it reported every policy.", "",
             "| run | policy | threshold | escape of forgeries (validation) | false-reject (test good) | escape (test defects) |",
             "|---|---|---|---|---|---|"]
    for run in args.runs:
        if not (run / "eval" / "report.json").exists():
            print(f"error: {run}: no eval/report.json (train, calibrate and evaluate it first)", file=sys.stderr)
            return 2
        try:
            rows = operating_points(run)
        except UserError as exc:  # no or a damaged calibration.yaml
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for row in rows:
            forged = "n/a" if row["forged_escape_rate"] is None else f"{row['forged_escape_rate']:.3f}"
            lines.append(f"| {run.name} | {row['policy']} | {row['threshold']:.4g} | {forged} | {row['false_reject_rate']:.3f} | {row['escape_rate']:.3f} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
