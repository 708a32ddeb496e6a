"""`edgefreq train --data DIR --config CFG --out RUN`: a fixed epoch budget, the last epoch is the model.

Straight-line training (nanoGPT style): seed, split, loop, checkpoint every epoch. Interrupting
loses at most the current epoch; running the same command again resumes from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from edgefreq.config import to_dict, write_yaml
from edgefreq.data import ImageDataset, scan_dataset, split_train_calibration
from edgefreq.data.forge import forge_batch
from edgefreq.errors import UserError
from edgefreq.kernels import decouple
from edgefreq.models import build_model
from edgefreq.rundir import RunConfig, load_config, read_config, resolve_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset folder (MVTec AD layout: train/good/...)")
    p.add_argument("--config", default="cpu-budget", help="a YAML config or a shipped one: paper, edge, cpu-budget (default)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write (resumed if it holds a checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.ngf=16 --set train.epochs=5 (repeatable)")


def run(args: argparse.Namespace) -> int:
    train(load_config(args.config, args.set), args.data, args.out)
    return 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_run(cfg: RunConfig, data: Path, out: Path) -> tuple[list[Path], list[Path]]:
    """Write config.yaml and split.yaml, or check an existing run matches (for resuming)."""
    index = scan_dataset(data)
    for warning in index.warnings:
        tqdm.write(f"warning: {warning}")
    train_paths, calib_paths = split_train_calibration(index.train_good, cfg.train.calibration_fraction, cfg.train.seed)
    split = {
        "root": str(Path(data).resolve()),
        "train": [str(p.relative_to(index.root)) for p in train_paths],
        "calibration": [str(p.relative_to(index.root)) for p in calib_paths],
    }
    if (out / "config.yaml").exists():
        if to_dict(read_config(out)) != to_dict(cfg):
            raise UserError(f"{out} already holds a run with another config: choose a new --out or delete it")
        return train_paths, calib_paths
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the run folder ({exc.strerror})") from None
    write_yaml(out / "split.yaml", split, "split")
    write_yaml(out / "config.yaml", to_dict(cfg), "config")
    return train_paths, calib_paths


def make_optimizer(params, cfg: RunConfig) -> torch.optim.Optimizer | None:
    params = list(params)
    if not params:
        return None
    t = cfg.train
    cls = torch.optim.RAdam if t.optimizer == "radam" else torch.optim.Adam
    return cls(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)


def save_checkpoint(out: Path, model: torch.nn.Module, optimizers: dict, epoch: int, generators: dict[str, torch.Generator]) -> None:
    """The last completed epoch, written to a temporary folder then swapped in."""
    tmp = out / "checkpoint.tmp"
    tmp.mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    state = {
        "epoch": epoch,
        "optimizers": {k: o.state_dict() for k, o in optimizers.items() if o is not None},
        "torch_rng": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    torch.save(state, tmp / "state.pt")
    final = out / "checkpoint"
    if final.exists():
        old = out / "checkpoint.old"
        final.replace(old)
        tmp.replace(final)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.replace(final)


def load_checkpoint(out: Path, model: torch.nn.Module, optimizers: dict, generators: dict[str, torch.Generator]) -> int:
    """Restore the last completed epoch; returns how many epochs are done (0 without a checkpoint)."""
    ckpt = out / "checkpoint"
    if not (ckpt / "state.pt").exists():
        return 0
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    state = torch.load(ckpt / "state.pt", weights_only=True)
    for k, o in optimizers.items():
        if o is not None:
            o.load_state_dict(state["optimizers"][k])
    torch.set_rng_state(state["torch_rng"])
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    return int(state["epoch"])


def train(cfg: RunConfig, data: Path, out: Path) -> Path:
    """Train `cfg` on the good images of `data` into run folder `out`; returns the weights path."""
    out = Path(out)
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    train_paths, calib_paths = prepare_run(cfg, Path(data), out)
    spec = cfg.preprocess
    dataset = ImageDataset(train_paths, spec)
    batch_size = min(cfg.train.batch_size, len(dataset))
    generator = torch.Generator().manual_seed(cfg.train.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size, generator=generator
    )
    model = build_model(cfg.model, spec.channels, spec.levels, spec.size).to(device)
    optimizers = {"g": make_optimizer(model.generator_parameters(), cfg), "d": make_optimizer(model.discriminator_parameters(), cfg)}
    forge_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    generators = {"loader": generator, "forge": forge_gen}
    done = load_checkpoint(out, model, optimizers, generators)
    if done >= cfg.train.epochs and (out / "model.safetensors").exists():
        tqdm.write(f"{out}: already trained for {done} epochs")
        return out / "model.safetensors"
    if done:
        tqdm.write(f"resuming {out} after epoch {done}/{cfg.train.epochs}")
    use_amp = cfg.train.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    tqdm.write(
        f"training {cfg.model.kind} on {len(train_paths)} images ({len(calib_paths)} held out for calibration), "
        f"{spec.size[0]}x{spec.size[1]}, {spec.levels} band(s), {device}"
    )

    def step(optimizer: torch.optim.Optimizer | None, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for epoch in range(done, cfg.train.epochs):
        model.train()
        start = time.perf_counter()
        totals: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch", leave=False)
        for images in bar:
            images = images.to(device, non_blocking=True)
            bands = decouple(images, spec.levels, cfg.train.fd_impl, spec.clip_high)
            forged = None
            if cfg.model.forged and optimizers["d"] is not None:
                fakes = forge_batch(images.cpu(), cfg.forge, forge_gen).to(device)
                forged = decouple(fakes, spec.levels, cfg.train.fd_impl, spec.clip_high)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                losses = model.losses_g(bands)
            step(optimizers["g"], losses["total"])
            if optimizers["d"] is not None:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    d_losses = model.losses_d(bands, forged)
                step(optimizers["d"], d_losses["total"])
                losses = {**losses, **{f"d_{k}": v for k, v in d_losses.items()}}
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.4f}")
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "seconds": round(seconds, 2), **{k: v / len(loader) for k, v in totals.items()}}
        with open(out / "train_log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        save_checkpoint(out, model, optimizers, epoch + 1, generators)
        tqdm.write(f"epoch {epoch + 1}/{cfg.train.epochs}  loss {record['total']:.4f}  {seconds:.1f} s")
    weights = out / "model.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(weights))
    tqdm.write(f"wrote {weights} (the last epoch)")
    return weights
