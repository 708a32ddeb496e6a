"""Training (`edgefreq train`, edgefreq/cli/train.py): a fixed epoch budget, the last epoch is the model.

Straight-line training (nanoGPT style): seed, split, loop, checkpoint every epoch. Interrupting
loses at most the current epoch; running the same command again resumes from the checkpoint.

Every epoch logs the content loss beside two references computed once on the training images:
an all-zero output's and the mean training image's. A generator that does not beat the mean
image has learned nothing a template does not know; the run ends with one line saying whether it
did (RUN/train_summary.yaml; eval and export repeat it). GAN steps follow the public code: the
D step reuses G's reconstruction (detached), carries the latent term, and D is re-initialized
when its loss collapses (D_COLLAPSE). With train.ema the moving average of the weights is the model.
With model.segment a segmentation stage follows (train.segment_epochs, numbered after the epochs):
the reconstruction is frozen and a segmentation head learns forged anomalies' masks on top of it.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from edgefreq.config import to_dict, write_yaml
from edgefreq.data import ImageDataset, load_image, scan_dataset, split_train_calibration
from edgefreq.data.forge import forge_batch, forge_mixed
from edgefreq.errors import UserError
from edgefreq.kernels import decouple
from edgefreq.kernels.preprocess import roi_box
from edgefreq.kernels.register import encode_reference, fit_reference
from edgefreq.models import build_model
from edgefreq.models.inpaint import erase_cells
from edgefreq.models.segmenter import focal_loss
from edgefreq.rundir import SUMMARY_FILE, RunConfig, first_difference, read_config, resolve_device, set_threads, training_key

D_COLLAPSE = 1e-5  # a D loss below this re-initializes D (the public Skip-GANomaly / OCR-GAN code's rule)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def with_reference(cfg: RunConfig, train_paths: list[Path]) -> RunConfig:
    """With preprocess.register rigid, `cfg` holding the reference pose fitted on the training images'
    ROIs (never a calibration or test image)."""
    spec = cfg.preprocess
    if spec.register == "none" or spec.reference is not None:
        return cfg
    def roi(path: Path) -> np.ndarray:
        img = load_image(path)
        x, y, w, h = roi_box(spec, img.shape[0], img.shape[1])
        return img[y : y + h, x : x + w]

    start = time.perf_counter()
    reference = encode_reference(fit_reference(roi(p) for p in train_paths))
    tqdm.write(f"fitted the reference pose on {len(train_paths)} training images ({time.perf_counter() - start:.1f} s)")
    return replace(cfg, preprocess=replace(spec, reference=reference))


def prepare_run(cfg: RunConfig, data: Path, out: Path) -> tuple[RunConfig, list[Path], list[Path]]:
    """Write config.yaml and split.yaml, or check an existing run matches (for resuming); returns the
    config as the run holds it (with its reference pose when it registers)."""
    index = scan_dataset(data)
    for warning in index.warnings:
        tqdm.write(f"warning: {warning}")
    train_paths, calib_paths = split_train_calibration(index.train_good, cfg.data.calibration_fraction, cfg.data.split_seed)
    split = {
        "root": str(Path(data).resolve()),
        "train": [str(p.relative_to(index.root)) for p in train_paths],
        "calibration": [str(p.relative_to(index.root)) for p in calib_paths],
    }
    old = read_config(out) if (out / "config.yaml").exists() else None
    if old is not None and cfg.preprocess.reference is None:  # resuming: the run's own reference pose, not fitted again
        cfg = replace(cfg, preprocess=replace(cfg.preprocess, reference=old.preprocess.reference))
    else:
        cfg = with_reference(cfg, train_paths)
    if old is not None:
        diff = first_difference(training_key(old), training_key(cfg))
        if diff:
            raise UserError(f"{out} already holds a run with another config ({diff}): choose a new --out or delete it")
        diff = first_difference(to_dict(old), to_dict(cfg))
        if diff:
            value = getattr(cfg.model, diff.split(".", 1)[1])
            raise UserError(
                f"{out} already holds this model; {diff} is a scoring setting that needs no training: "
                f"`edgefreq calibrate {out} --set {diff}={value}`"
            )
        return cfg, train_paths, calib_paths
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the run folder ({exc.strerror})") from None
    write_yaml(out / "split.yaml", split, "split")
    write_yaml(out / "config.yaml", to_dict(cfg), "config")
    return cfg, train_paths, calib_paths


def make_optimizer(params, cfg: RunConfig) -> torch.optim.Optimizer | None:
    params = list(params)
    if not params:
        return None
    t = cfg.train
    cls = torch.optim.RAdam if t.optimizer == "radam" else torch.optim.Adam
    return cls(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(
    out: Path, model: torch.nn.Module, optimizers: dict, epoch: int, generators: dict[str, torch.Generator],
    ema: AveragedModel | None = None,
) -> None:
    """The last completed epoch, written to a temporary folder then swapped in."""
    tmp = out / "checkpoint.tmp"
    tmp.mkdir(exist_ok=True)
    save_file(state_tensors(model), str(tmp / "model.safetensors"))
    if ema is not None:
        save_file(state_tensors(ema), str(tmp / "ema.safetensors"))
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


def load_checkpoint(
    out: Path, model: torch.nn.Module, optimizers: dict, generators: dict[str, torch.Generator], ema: AveragedModel | None = None
) -> int:
    """Restore the last completed epoch; returns how many epochs are done (0 without a checkpoint)."""
    ckpt = out / "checkpoint"
    if not (ckpt / "state.pt").exists():
        return 0
    try:
        model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
        if ema is not None:
            ema.load_state_dict(load_file(str(ckpt / "ema.safetensors")))
        state = torch.load(ckpt / "state.pt", weights_only=True)
    except Exception as exc:  # safetensors / torch.load / load_state_dict raise many types for a damaged file
        raise UserError(f"{ckpt}: the checkpoint is damaged or from another config ({type(exc).__name__}): delete {ckpt} to start over") from None
    for k, o in optimizers.items():
        if o is not None:
            o.load_state_dict(state["optimizers"][k])
    torch.set_rng_state(state["torch_rng"])
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    return int(state["epoch"])


@torch.no_grad()
def content_references(model: torch.nn.Module, loader, spec, fd_impl: str, device: torch.device) -> dict[str, float]:
    """The content loss of an all-zero output and of the mean training image, over the training images."""
    batches = [decouple(images.to(device), spec.levels, fd_impl, spec.clip_high) for images in loader]
    targets = [model.target(bands) for bands in batches]
    count = sum(x.shape[0] for x in targets)
    mean = sum(x.double().sum(0, keepdim=True) for x in targets) / count
    refs = {"ref_zero": 0.0, "ref_mean": 0.0}
    for x in targets:
        refs["ref_zero"] += float(model.content(torch.zeros_like(x), x)) * x.shape[0] / count
        refs["ref_mean"] += float(model.content(mean.to(x.dtype).expand_as(x), x)) * x.shape[0] / count
    return refs


@torch.no_grad()
def final_content(model: torch.nn.Module, loader, spec, fd_impl: str, device: torch.device) -> float:
    """The content loss of the finished model (eval mode) over the training images."""
    model.eval()
    total, count = 0.0, 0
    for images in loader:
        bands = decouple(images.to(device), spec.levels, fd_impl, spec.clip_high)
        x = model.target(bands)
        total += float(model.content(model.restore(bands), x)) * x.shape[0]
        count += x.shape[0]
    return total / count


def generator_check(kind: str, trainable: bool, content: float, refs: dict[str, float]) -> dict:
    """What RUN/train_summary.yaml holds, with the one line train prints."""
    if not trainable:
        line = f"{kind} is the mean training image itself (content {content:.4g}); no generator to check"
        return {"content": content, **refs, "beats_mean_image": None, "line": line}
    beats = content < refs["ref_mean"]
    verdict = "beat" if beats else "did NOT beat"
    line = (
        f"the generator {verdict} the mean training image: content loss {content:.4g} on the training images vs "
        f"{refs['ref_mean']:.4g} (mean image) and {refs['ref_zero']:.4g} (all-zero output)"
    )
    if not beats:
        line += ": it reconstructs no better than a template; try more epochs, train.warmup_epochs, or another model"
    return {"content": content, **refs, "beats_mean_image": bool(beats), "line": line}


def train(cfg: RunConfig, data: Path, out: Path) -> Path:
    """Train `cfg` on the good images of `data` into run folder `out`; returns the weights path."""
    out = Path(out)
    device = resolve_device(cfg.train.device)
    set_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, cfg.preprocess.channels, cfg.preprocess.levels, cfg.preprocess.size).to(device)
    optimizers = {"g": make_optimizer(model.generator_parameters(), cfg), "d": make_optimizer(model.discriminator_parameters(), cfg)}
    if model.segmenter is not None:
        optimizers["s"] = torch.optim.Adam(model.segmenter_parameters(), lr=cfg.train.segment_lr)
    cfg, train_paths, calib_paths = prepare_run(cfg, Path(data), out)
    spec = cfg.preprocess
    dataset = ImageDataset(train_paths, spec)
    batch_size = min(cfg.train.batch_size, len(dataset))
    generator = torch.Generator().manual_seed(cfg.train.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size, generator=generator
    )
    in_order = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    ema = None
    if cfg.train.ema and model.trainable:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema), use_buffers=True)
    forge_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    generators = {"loader": generator, "forge": forge_gen}
    weights = out / "model.safetensors"
    done = load_checkpoint(out, model, optimizers, generators, ema)
    if weights.exists():  # written only when training finished (a twin copied without its checkpoint too)
        tqdm.write(f"{out}: already trained ({cfg.train.epochs} epochs)")
        return weights
    total = cfg.train.epochs + (cfg.train.segment_epochs if model.segmenter is not None else 0)
    if done:
        tqdm.write(f"resuming {out} after epoch {done}/{total}")
    tqdm.write(
        f"training {cfg.model.kind} on {len(train_paths)} images ({len(calib_paths)} held out for calibration), "
        f"{spec.size[0]}x{spec.size[1]}, {spec.levels} band(s), {device}, {torch.get_num_threads()} CPU thread(s)"
    )
    refs = content_references(model, in_order, spec, cfg.train.fd_impl, device)
    if model.trainable:
        run_epochs(cfg, model, optimizers, generators, ema, loader, refs, done, out, device)
    elif not done:  # a checkpoint of the segmentation stage already holds the fitted model
        start = time.perf_counter()
        model.fit(decouple(images.to(device), spec.levels, cfg.train.fd_impl, spec.clip_high) for images in in_order)
        with open(out / "train_log.jsonl", "a") as log:
            log.write(json.dumps({"epoch": cfg.train.epochs, "seconds": round(time.perf_counter() - start, 2), "fitted": True, **refs}) + "\n")
    final = ema.module if ema is not None else model
    if model.segmenter is not None:
        if done <= cfg.train.epochs:  # entering the stage: the reconstruction it is trained on is the final one
            if ema is not None:
                model.load_state_dict(ema.module.state_dict())
            fit_segmenter_input(model, in_order, spec, cfg.train.fd_impl, device)
        segment_epochs(cfg, model, optimizers, generators, ema, loader, max(done, cfg.train.epochs), out, device)
        final = model
    summary = generator_check(cfg.model.kind, model.trainable, final_content(final, in_order, spec, cfg.train.fd_impl, device), refs)
    write_yaml(out / SUMMARY_FILE, summary, "training summary")
    save_file(state_tensors(final), str(weights))
    tqdm.write(summary["line"])
    tqdm.write(f"wrote {weights} ({'the moving average of the weights at ' if ema is not None else ''}the last epoch)")
    return weights


@torch.no_grad()
def fit_segmenter_input(model: torch.nn.Module, loader, spec, fd_impl: str, device: torch.device) -> None:
    """The segmenter's input statistics: the error maps of the training images under the final reconstruction."""
    model.eval()
    maps = []
    for images in loader:
        bands = decouple(images.to(device), spec.levels, fd_impl, spec.clip_high)
        maps.append(model.error(model.target(bands), model.restore(bands)).cpu())
    model.segmenter.fit_map_stats(torch.cat(maps))


def segment_lr(cfg: RunConfig, k: int) -> float:
    """The segmentation stage's learning rate in its epoch k (0-based): x 0.2 at 80 % and at 90 %."""
    n = cfg.train.segment_epochs
    return cfg.train.segment_lr * 0.2 ** ((k >= int(0.8 * n)) + (k >= int(0.9 * n)))


def segment_epochs(cfg: RunConfig, model, optimizers: dict, generators: dict, ema, loader, done: int, out: Path, device) -> None:
    """The segmentation stage: epochs done+1 .. epochs + segment_epochs, a checkpoint after each.

    The reconstruction model is frozen (eval mode: BatchNorm statistics fixed); in every batch half
    the images (drawn per image) are forged (data.forge_mixed) and the segmenter learns the mask of
    what was forged (all zeros on the clean half) from (x, x_hat, error map) with the focal loss."""
    spec = cfg.preprocess
    optimizer = optimizers["s"]
    start_epoch = cfg.train.epochs
    for epoch in range(done, start_epoch + cfg.train.segment_epochs):
        model.eval()
        model.segmenter.train()
        for group in optimizer.param_groups:
            group["lr"] = segment_lr(cfg, epoch - start_epoch)
        start = time.perf_counter()
        total, count = 0.0, 0
        for images in tqdm(loader, desc=f"segment epoch {epoch + 1}/{start_epoch + cfg.train.segment_epochs}", unit="batch", leave=False):
            forged, mask = forge_mixed(images, cfg.forge, generators["forge"])
            keep = torch.rand(images.shape[0], generator=generators["forge"]) < 0.5
            forged = torch.where(keep.view(-1, 1, 1, 1), images, forged).to(device)
            mask = (mask & ~keep.view(-1, 1, 1, 1)).to(device, forged.dtype)
            with torch.no_grad():  # the head's inputs exactly as raw_map gives them at inference
                bands = decouple(forged, spec.levels, cfg.train.fd_impl, spec.clip_high)
                x, x_hat = model.target(bands), model.restore(bands)
                err = model.error(x, x_hat)
            loss = focal_loss(model.segmenter(x, x_hat, err), mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * images.shape[0]
            count += images.shape[0]
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "stage": "segment", "seconds": round(seconds, 2), "focal": total / count}
        with open(out / "train_log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        save_checkpoint(out, model, optimizers, epoch + 1, generators, ema)  # ema: unchanged, kept for a resume
        tqdm.write(f"segment epoch {epoch + 1}/{start_epoch + cfg.train.segment_epochs}  focal {record['focal']:.4f}  {seconds:.1f} s")


def run_epochs(cfg: RunConfig, model, optimizers: dict, generators: dict, ema, loader, refs: dict, done: int, out: Path, device) -> None:
    """Epochs done+1 .. cfg.train.epochs, a checkpoint after each."""
    spec = cfg.preprocess
    use_amp = cfg.train.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for epoch in range(done, cfg.train.epochs):
        model.train()
        warmup = epoch < cfg.train.warmup_epochs
        start = time.perf_counter()
        totals: dict[str, float] = {}
        reinits = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch", leave=False)
        for images in bar:
            images = images.to(device, non_blocking=True)
            bands = decouple(images, spec.levels, cfg.train.fd_impl, spec.clip_high)
            inputs, clean = bands, None
            corrupted = None
            if cfg.model.denoise:  # DRAEM's objective: the clean image from a forged copy
                corrupted = forge_batch(images.cpu(), cfg.forge, generators["forge"])
            elif cfg.model.inpaint:  # RIAD's objective: the whole clean image from a copy with cells erased
                corrupted = erase_cells(images.cpu(), generators["forge"])
            if corrupted is not None:
                inputs = decouple(corrupted.to(device), spec.levels, cfg.train.fd_impl, spec.clip_high)
                clean = model.target(bands)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                losses, x_hat = model.losses_g(inputs, clean)
            step(optimizers["g"], losses["content"] if warmup else losses["total"])
            if optimizers["d"] is not None and not warmup:
                forged = None
                if cfg.model.forged:
                    fakes = forge_batch(images.cpu(), cfg.forge, generators["forge"]).to(device)
                    forged = decouple(fakes, spec.levels, cfg.train.fd_impl, spec.clip_high)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    d_losses = model.losses_d(bands, x_hat, forged)
                step(optimizers["d"], d_losses["total"])
                losses = {**losses, **{f"d_{k}": v for k, v in d_losses.items()}}
                if float(d_losses["total"].detach()) < D_COLLAPSE:
                    model.reinit_discriminator()
                    optimizers["d"].state.clear()
                    reinits += 1
            if ema is not None:
                ema.update_parameters(model)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.4f}")
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "seconds": round(seconds, 2), **{k: v / len(loader) for k, v in totals.items()}, **refs}
        if model.has_discriminator:
            record |= {"warmup": warmup, "d_reinit": reinits}
        with open(out / "train_log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        save_checkpoint(out, model, optimizers, epoch + 1, generators, ema)
        tqdm.write(
            f"epoch {epoch + 1}/{cfg.train.epochs}  loss {record['total']:.4f}  content {record['content']:.4g} "
            f"(mean image {refs['ref_mean']:.4g}, zero {refs['ref_zero']:.4g})  {seconds:.1f} s"
        )
