"""Calibration (`edgefreq calibrate RUN`, edgefreq/cli/calibrate.py): fit the score statistics and store the
normal range and threshold.

The calibration images come from the run's split (good images the model never trained on);
`--data` scores another folder of good images instead (e.g. fresh images from the line).
The score statistics (per-pixel mean and std of the maps for model.normalize: pixel, the
standardization of the content and latent terms for OCR-GAN) are fitted on these images; each
image's score for the threshold is computed with statistics fitted on the OTHER images
(leave-one-out), so no image counts twice. `--set model.map=msgms` (any of models.config.rescorable_keys: SCORING_KEYS, less a segmented run's map)
rescores a trained run: training never reads those keys.

Validation (RUN/validation.yaml): a forged copy of every calibration image (CutPaste + CutOut, the
run's forge settings, a fixed seed), scored under the statistics without its clean image, against
the clean leave-one-out scores: the image AUROC of good vs forged parts. It uses no test image,
so it is what a scoring setting (or the shipped config) may be chosen on; real defects differ from
forgeries, so it ranks settings, it does not predict the test AUROC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from edgefreq.calibration import COMPARED_POLICIES, Calibration, ThresholdPolicy, false_reject_rate, is_nok
from edgefreq.config import from_dict, to_dict, write_yaml
from edgefreq.data import ForgeConfig, forge_batch, scan_dataset
from edgefreq.errors import UserError
from edgefreq.models.config import rescorable_keys
from edgefreq.models.score_head import scoring_settings
from edgefreq.rundir import STATS_FILE, RunConfig, apply_overrides, first_difference, load_run, read_config, read_split, training_key
from edgefreq.scoring import raw_parts_paths

VALIDATION_FILE = "validation.yaml"
VALIDATION_SEED = 12345  # the forgeries are the same for every scoring setting of a run


def rescored_config(run: Path, overrides: list[str]) -> RunConfig:
    """The run's config with scoring-key overrides; any other key is refused (it needs training)."""
    cfg = read_config(run)
    if not overrides:
        return cfg
    new = from_dict(RunConfig, apply_overrides(to_dict(cfg), overrides), where="--set")
    diff = first_difference(training_key(cfg), training_key(new))
    if diff:
        raise UserError(f"--set {diff}: training reads this key, so it needs a new training run; calibrate changes only {', '.join('model.' + k for k in rescorable_keys(cfg.model))}")
    return new


def calibrate(
    run: Path, policy: ThresholdPolicy, data: Path | None = None, batch: int = 16, device: str = "auto", overrides: list[str] = (),
    extra_good: list[Path] = (),
) -> Calibration:
    run = Path(run)
    if batch < 1:
        raise UserError(f"--batch must be at least 1, got {batch}")
    cfg = rescored_config(run, list(overrides))
    model, cfg = load_run(run, device, stats=False, cfg=cfg)
    if data is not None:
        paths = scan_dataset(data).train_good
    else:
        _, _, paths = read_split(run)
    paths = list(paths) + [p for folder in extra_good for p in scan_dataset(folder).train_good]
    if not paths:
        raise UserError(f"{run}: no calibration images")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(f"{missing[0]}: calibration image not found (the data folder moved? pass --data)")
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    forge = cfg.forge if cfg.forge.active else ForgeConfig()
    (raw, latent), forged = raw_parts_paths(
        model, cfg.preprocess, paths, batch, desc="calibrating", probe=lambda x: forge_batch(x.cpu(), forge, generator).to(x.device)
    )
    scores, forged_scores = model.head.fit(raw, latent, forged)
    calibration = Calibration.from_scores(scores.numpy(), policy)
    good, fakes = scores.numpy(), forged_scores.numpy()
    validation = {
        "forged_auroc": forged_auroc(good, fakes),
        # the operating point on forgeries: the share the calibrated threshold lets through
        "forged_escape_rate": float(np.mean(~is_nok(fakes, calibration.threshold))),
        "images": len(paths),
        "what": "good calibration images (leave-one-out scores) vs a CutPaste + CutOut forged copy of each, no test image",
        "scoring": scoring_settings(cfg.model),
        # the menu of operating points, no test image: each compared policy's threshold on these
        # leave-one-out scores, the share of them it rejects and the share of forgeries it lets through
        "policies": [operating_point(p, p.threshold(calibration.range), good, fakes) for p in COMPARED_POLICIES],
    }
    # written only now that everything is computed: a failure above leaves the run as it was
    if overrides:
        write_yaml(run / "config.yaml", to_dict(cfg), "config")
    stats = {k: v.detach().float().contiguous() for k, v in model.head.stats().items()}
    save_file(stats, str(run / STATS_FILE), metadata=scoring_settings(cfg.model))
    calibration.save(run / "calibration.yaml")
    write_yaml(run / VALIDATION_FILE, validation, "validation")
    return calibration


def operating_point(policy: ThresholdPolicy, threshold: float, good: np.ndarray, forged: np.ndarray) -> dict:
    return {
        "policy": policy.describe(),
        "threshold": float(threshold),
        "calibration_false_reject_rate": false_reject_rate(good, threshold),
        "forged_escape_rate": float(np.mean(~is_nok(forged, threshold))),
    }


def forged_auroc(good: np.ndarray, forged: np.ndarray) -> float | None:
    """Image AUROC of forged (positive) against good scores; None without scikit-learn (the eval extra)."""
    try:
        from sklearn.metrics import roc_auc_score
    except ModuleNotFoundError:
        return None
    labels = np.r_[np.zeros(len(good)), np.ones(len(forged))]
    return float(roc_auc_score(labels, np.r_[good, forged]))
