"""The torch backend (a run folder): the model itself, the reference every engine is checked against."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from edgefreq.calibration import Calibration
from edgefreq.runtime.record import engine_id

from .base import Backend, Band


class TorchBackend(Backend):
    """A trained run (RUN/config.yaml + RUN/model.safetensors [+ RUN/calibration.yaml]) in eval mode."""

    name = "torch"

    def __init__(self, run: str | Path, device: str = "auto") -> None:
        from edgefreq.rundir import load_run

        run = Path(run)
        self._model, cfg = load_run(run, device)
        calibration = Calibration.load(run / "calibration.yaml") if (run / "calibration.yaml").exists() else None
        digest = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
        self._device = next(self._model.parameters()).device
        super().__init__(cfg.preprocess, calibration, cfg.model.kind, engine_id(run.name, digest), str(self._device), None)

    def _infer(self, bands: list[Band]) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            score, amap = self._model.score([torch.as_tensor(b).to(self._device, torch.float32) for b in bands])
        return score.float().cpu().numpy(), amap.float().cpu().numpy()

    def close(self) -> None:
        self._model = None
