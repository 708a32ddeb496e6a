"""`edgefreq train --data DIR [--config CFG] --out RUN`: train a model on good images (edgefreq.train)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgefreq.cli.options import add_device
from edgefreq.rundir import load_config
from edgefreq.train import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset folder (MVTec AD layout: train/good/...)")
    p.add_argument("--config", default="edge", help="a YAML config or a shipped one: edge (default), paper, cpu-budget, variation, ...")
    p.add_argument("--out", type=Path, required=True, help="run folder to write (resumed if it holds a checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.ngf=16 --set train.epochs=5 (repeatable)")
    add_device(p, "the model trains (sets the config's train.device; default: the config's, auto)", default=None)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.set) + ([f"train.device={args.device}"] if args.device is not None else [])
    train(load_config(args.config, overrides), args.data, args.out)
    return 0
