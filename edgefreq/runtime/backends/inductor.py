"""AOTInductor backend (.pt2): the compiled package, on the CPU or the GPU it was built for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgefreq.errors import UserError
from edgefreq.export.sidecar import Sidecar

from .base import Backend, Band


class InductorBackend(Backend):
    """A .pt2 package loaded with torch._inductor.aoti_load_package (no recompilation)."""

    name = "inductor"

    def __init__(self, path: str | Path, sidecar: Sidecar) -> None:
        try:
            self._runner = torch._inductor.aoti_load_package(str(path))
        except Exception as exc:  # a damaged or foreign package fails inside torch with varied types
            raise UserError(f"torch cannot load the package {path}: {str(exc).splitlines()[0]}: {sidecar.remake}") from None
        device = "cuda:0" if sidecar.device == "cuda" else "cpu"
        super().__init__(
            sidecar.preprocess,
            sidecar.calibration,
            sidecar.model,
            sidecar.engine_id,
            device,
            sidecar.batch.max,
        )
        self._device = torch.device(device)

    def _infer(self, bands: list[Band]) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            score, amap = self._runner(*(torch.as_tensor(b).to(self._device, torch.float32) for b in bands))
        return score.cpu().numpy(), amap.cpu().numpy()

    def close(self) -> None:
        self._runner = None
