"""A run folder: what `edgefreq train` writes and every later stage reads.

    RUN/config.yaml        the resolved RunConfig (model, preprocess, train, forge)
    RUN/split.yaml         data root + the training and calibration image lists (relative paths)
    RUN/checkpoint/        last completed epoch: model.safetensors + state.pt (optimizers, RNG)
    RUN/model.safetensors  the final model (the last epoch: no epoch is chosen on any test set)
    RUN/train_log.jsonl    one line per epoch: losses, seconds
    RUN/calibration.yaml   written by `edgefreq calibrate`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

from edgefreq.config import from_dict, load_yaml
from edgefreq.data.forge import ForgeConfig
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model

CONFIGS_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    epochs: int = 15
    batch_size: int = 16
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | radam (WFDL)
    seed: int = 1
    calibration_fraction: float = 0.2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    fd_impl: str = "auto"  # FD implementation during training (kernels.IMPLS)
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError("train.epochs and train.batch_size must be at least 1")
        if self.optimizer not in ("adam", "radam"):
            raise UserError(f"train.optimizer must be adam or radam, got {self.optimizer!r}")
        if not 0 < self.calibration_fraction < 1:
            raise UserError("train.calibration_fraction must be between 0 and 1")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: Preprocess = field(default_factory=Preprocess)
    train: TrainConfig = field(default_factory=TrainConfig)
    forge: ForgeConfig = field(default_factory=ForgeConfig)


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides (value parsed as YAML) to a config mapping."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise UserError(f"--set {item!r}: expected section.key=value, e.g. model.ngf=16")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML") from None
    return data


def load_config(name_or_path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """A YAML file or the name of a shipped config (paper, edge, cpu-budget, ...), plus overrides."""
    path = Path(name_or_path)
    if not path.exists() and (CONFIGS_DIR / f"{name_or_path}.yaml").exists():
        path = CONFIGS_DIR / f"{name_or_path}.yaml"
    elif not path.exists():
        raise UserError(f"{name_or_path}: no such config file (shipped configs: {', '.join(shipped_configs())})")
    data = apply_overrides(load_yaml(path), list(overrides))
    return from_dict(RunConfig, data, where=str(path))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA GPU is available here (use device: auto or cpu)")
    return device


def read_config(run: Path) -> RunConfig:
    if not (run / "config.yaml").exists():
        raise UserError(f"{run}: not a run folder (no config.yaml): train one with `edgefreq train --out {run}`")
    return from_dict(RunConfig, load_yaml(run / "config.yaml"), where=str(run / "config.yaml"))


def read_split(run: Path) -> tuple[Path, list[Path], list[Path]]:
    """(data root, training images, calibration images) as absolute paths."""
    data = load_yaml(run / "split.yaml")
    root = Path(data["root"])
    return root, [root / p for p in data["train"]], [root / p for p in data["calibration"]]


def load_run(run: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, RunConfig]:
    """The trained model of a run folder, in eval mode on `device`, and its config."""
    run = Path(run)
    cfg = read_config(run)
    weights = run / "model.safetensors"
    if not weights.exists():
        raise UserError(f"{run}: training has not finished (no model.safetensors): rerun `edgefreq train` with --out {run} to resume")
    model = build_model(cfg.model, cfg.preprocess.channels, cfg.preprocess.levels, cfg.preprocess.size)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise UserError(f"{weights}: cannot read the weights ({exc})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{weights}: weights do not match the config (missing {len(missing)}, unexpected {len(unexpected)} tensors)")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return model.to(dev).eval(), cfg

