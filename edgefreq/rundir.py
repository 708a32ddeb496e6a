"""A run folder: what `edgefreq train` writes and every later stage reads.

    RUN/config.yaml        the resolved RunConfig (model, preprocess, train, forge)
    RUN/split.yaml         data root + the training and calibration image lists (relative paths)
    RUN/checkpoint/        last completed epoch: model.safetensors + state.pt (optimizers, RNG)
    RUN/model.safetensors  the final model (the last epoch: no epoch is chosen on any test set)
    RUN/train_log.jsonl    one line per epoch: losses, seconds
    RUN/train_summary.yaml the generator check: the final content loss against the all-zero and
                           mean-image references on the training images (train writes it)
    RUN/calibration.yaml   written by `edgefreq calibrate`
    RUN/score_stats.safetensors  the score statistics (per-pixel mean/std, term standardization)
                           `edgefreq calibrate` fitted for the scoring keys named in its metadata
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

from edgefreq.calibration import Calibration
from edgefreq.config import from_dict, load_yaml, to_dict
from edgefreq.data.forge import ForgeConfig
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess
from edgefreq.models import ModelConfig, build_model
from edgefreq.models.config import rescorable_keys
from edgefreq.models.score_head import scoring_settings

CONFIGS_DIR = Path(__file__).parent / "configs"
STATS_FILE = "score_stats.safetensors"
SUMMARY_FILE = "train_summary.yaml"


@dataclass
class DataConfig:
    calibration_fraction: float = 0.2  # of train/good, held out for calibration
    split_seed: int = 0  # the train/calibration split's own seed: train.seed changes the init only

    def __post_init__(self) -> None:
        if not 0 < self.calibration_fraction < 1:
            raise UserError("data.calibration_fraction must be between 0 and 1")


@dataclass
class TrainConfig:
    epochs: int = 15
    batch_size: int = 16
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | radam (WFDL)
    seed: int = 1  # weight init, batch order, forged anomalies (not the split: data.split_seed)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0 = off); the EMA copy is the model
    warmup_epochs: int = 0  # GANs: epochs of content loss only (no adversarial / latent term, no D step)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    fd_impl: str = "auto"  # FD implementation during training (kernels.IMPLS)
    threads: int = 0  # torch CPU threads; 0 = half the CPUs this process may use, at least 1
    # the segmentation stage (model.segment > 0), after the `epochs` of the reconstruction model
    segment_epochs: int = 40
    segment_lr: float = 1e-3  # Adam; x 0.2 after 80 % and again after 90 % of segment_epochs

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError("train.epochs and train.batch_size must be at least 1")
        if self.optimizer not in ("adam", "radam"):
            raise UserError(f"train.optimizer must be adam or radam, got {self.optimizer!r}")
        if not 0.0 <= self.ema < 1.0:
            raise UserError(f"train.ema must be in [0, 1) (0 = off, e.g. 0.999), got {self.ema}")
        if self.segment_epochs < 1 or not self.segment_lr > 0:
            raise UserError("train.segment_epochs must be at least 1 and train.segment_lr > 0")
        if self.warmup_epochs < 0 or self.threads < 0:
            raise UserError("train.warmup_epochs and train.threads must be >= 0")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: Preprocess = field(default_factory=Preprocess)
    train: TrainConfig = field(default_factory=TrainConfig)
    forge: ForgeConfig = field(default_factory=ForgeConfig)
    data: DataConfig = field(default_factory=DataConfig)


def default_threads() -> int:
    """Half the CPUs this process may use, at least 1: on a shared 2-core box two torch threads
    ran 4-10x slower per step than one while another job ran (benchmarks/results/threads-cpu.md)."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


def set_threads(threads: int) -> int:
    """torch's CPU thread count: `threads`, or default_threads() for 0; returns what was set."""
    n = threads or default_threads()
    torch.set_num_threads(n)
    return n


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
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"device {name!r}: unknown device (choose auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r}: edgefreq runs on cpu or cuda (choose auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA GPU is available here (use device: auto or cpu)")
    return device


def read_config(run: Path) -> RunConfig:
    if not (run / "config.yaml").exists():
        raise UserError(f"{run}: not a run folder (no config.yaml): train one with `edgefreq train --out {run}`")
    return from_dict(RunConfig, load_yaml(run / "config.yaml"), where=str(run / "config.yaml"))


def generator_line(run: Path) -> tuple[bool | None, str]:
    """(did the generator beat the mean training image?, the line train printed), from RUN/train_summary.yaml."""
    path = Path(run) / SUMMARY_FILE
    if not path.exists():
        return None, "no generator check (trained before it existed): train the run again to get one"
    summary = load_yaml(path)
    return summary.get("beats_mean_image"), str(summary.get("line", ""))


def read_calibration(run: Path) -> Calibration | None:
    """RUN/calibration.yaml, or None when the run is not calibrated yet."""
    path = Path(run) / "calibration.yaml"
    return Calibration.load(path) if path.exists() else None


def read_split(run: Path) -> tuple[Path, list[Path], list[Path]]:
    """(data root, training images, calibration images) as absolute paths."""
    path = run / "split.yaml"
    data = load_yaml(path)
    ok = isinstance(data.get("root"), str) and all(
        isinstance(data.get(k), list) and all(isinstance(p, str) for p in data[k]) for k in ("train", "calibration")
    )
    if not ok:
        raise UserError(f"{path}: not a split file (needs root: a folder, train: and calibration: lists of image paths); train the run again")
    root = Path(data["root"])
    return root, [root / p for p in data["train"]], [root / p for p in data["calibration"]]


def training_key(cfg: RunConfig) -> dict[str, Any]:
    """Everything training reads: the config without the scoring keys it did not read (rescorable_keys) and
    without the reference pose, which training fits (deterministically, from the split) rather
    than reads: a run and its scoring twin, one fitted and one not yet, are the same training."""
    d = to_dict(cfg)
    for key in rescorable_keys(cfg.model):
        d["model"].pop(key)
    d["preprocess"].pop("reference")
    return d


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The first key path where two plain config mappings differ, e.g. 'model.ngf', or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            diff = first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
            if diff:
                return diff
        return None
    return None if a == b else where


def load_stats(model: torch.nn.Module, cfg: RunConfig, run: Path) -> bool:
    """Load RUN/score_stats.safetensors into model.head when it was fitted for cfg's scoring keys;
    returns whether it was loaded. Stale statistics (fitted for other scoring keys) are an error."""
    path = run / STATS_FILE
    if not path.exists():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        stats = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise UserError(f"{path}: cannot read the score statistics ({exc}): run `edgefreq calibrate {run}` again") from None
    want = scoring_settings(cfg.model)
    if {k: meta.get(k) for k in want} != want:
        diff = next(k for k in want if meta.get(k) != want[k])
        raise UserError(
            f"{path}: fitted for model.{diff}={meta.get(diff)} but the run's config says {want[diff]}: "
            f"run `edgefreq calibrate {run}` again"
        )
    model.head.set_stats(stats)
    return True


def load_run(
    run: str | Path, device: str | torch.device = "cpu", stats: bool = True, cfg: RunConfig | None = None
) -> tuple[torch.nn.Module, RunConfig]:
    """The trained model of a run folder, in eval mode on `device`, and its config; with `stats`,
    the score statistics `edgefreq calibrate` fitted (a score that needs them refuses to run without).
    `cfg` replaces the run's config (calibrate's rescoring: the same training keys, other scoring keys)."""
    run = Path(run)
    cfg = read_config(run) if cfg is None else cfg
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
    if stats and not load_stats(model, cfg, run) and cfg.model.normalize == "pixel":
        raise UserError(f"{run}: its score (model.normalize: pixel) needs the per-pixel statistics: run `edgefreq calibrate {run}` first")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return model.to(dev).eval(), cfg
