"""TensorRT-RTX backend (.rtx): the TensorRT backend's buffers, stream and CUDA graphs, plus a runtime cache.

A TensorRT-RTX engine is built ahead of time without a GPU (export/tensorrt.py build_rtx) and
compiles its kernels for the GPU it meets when the execution context is made. The runtime cache
keeps those kernels between starts: one file per engine (sha256) and GPU model in
~/.cache/edgefreq, loaded into the context's runtime config when the backend opens (a cache made
by another library version, driver or GPU is refused by the library and rebuilt) and written back
when it closes, so a line restarts without recompiling.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from edgefreq.export.tensorrt import TENSORRT_RTX, cache_folder

from .tensorrt import TensorRTBackend

log = logging.getLogger("edgefreq.tensorrt")


def runtime_cache_path(sha256: str, compute_capability: str) -> Path:
    """~/.cache/edgefreq/rtx-SHA16-smXY.runtime: the compiled kernels of one engine on one GPU model."""
    return cache_folder() / f"rtx-{sha256[:16]}-sm{compute_capability.replace('.', '')}.runtime"


class RTXBackend(TensorRTBackend):
    """A TensorRT-RTX engine on an RTX GPU, checked against its sidecar (open_backend does that)."""

    name = "rtx"
    library = TENSORRT_RTX

    def _create_context(self) -> Any:
        import torch

        cc = "{}.{}".format(*torch.cuda.get_device_capability()) if self._cuda else "0.0"
        self._cache_path = runtime_cache_path(self._sidecar.sha256, cc)
        self._runtime_config = self._engine.create_runtime_config()
        cache = self._runtime_config.create_runtime_cache()
        if self._cache_path.is_file():
            if cache.deserialize(self._cache_path.read_bytes()):
                log.info("TensorRT-RTX runtime cache loaded from %s", self._cache_path)
            else:
                log.info("TensorRT-RTX runtime cache %s was made elsewhere (library, driver or GPU); compiling anew", self._cache_path)
        self._runtime_config.set_runtime_cache(cache)
        return self._engine.create_execution_context(self._runtime_config)

    def close(self) -> None:
        if self._engine is not None:
            self.save_runtime_cache()
        super().close()

    def save_runtime_cache(self) -> None:
        """Write the kernels compiled so far to the runtime cache file (through a temporary file)."""
        data = bytes(self._runtime_config.get_runtime_cache().serialize())
        tmp = self._cache_path.with_name(f".{self._cache_path.name}.tmp")
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self._cache_path)
        except OSError as exc:  # the line runs on; the next start compiles again
            tmp.unlink(missing_ok=True)
            log.warning("cannot write the TensorRT-RTX runtime cache %s (%s)", self._cache_path, exc.strerror)
