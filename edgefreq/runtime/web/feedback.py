"""Operator feedback: a NOK part filed as a false reject or a confirmed defect, in the MVTec AD layout.

    FOLDER/train/good/<stem>.png   good part (false reject): extra good images for calibration
    FOLDER/test/<label>/<stem>.png confirmed defect (label "defect" unless the operator names one)

Each image is the full frame the camera delivered (calibrate and train apply the run's ROI
themselves), written losslessly, with `<stem>.json` beside it: the decision record and what the
operator said. `edgefreq calibrate RUN --extra-good FOLDER` reads FOLDER/train/good (scan_dataset
ignores the .json files). Files are written through a temporary name, so a reader never sees half
a file; filing the same part again under another answer moves it (the latest answer counts).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import cv2

from edgefreq.errors import UserError
from edgefreq.runtime.web.state import Part

KINDS = ("good", "defect")
LABEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def check_folder(folder: Path) -> Path:
    """The feedback folder, created; a UserError (before the line starts) when it cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".edgefreq-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--feedback {folder}: cannot write there ({exc.strerror}); create it or choose another folder") from None
    return folder


def label_for(kind: str, label: str | None) -> str:
    """The class folder a feedback goes to; ValueError (the page shows it) for a bad kind or label."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "good":
        return "good"
    label = (label or "defect").strip().lower()
    if not LABEL.fullmatch(label) or label == "good":
        raise ValueError("a defect label is 1-40 characters a-z, 0-9, '_' or '-', starting with a letter or digit, and not 'good'")
    return label


def stem(part: Part) -> str:
    d = part.record
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(d["capture_ts"]))
    return f"{stamp}-frame{d['frame_id']:08d}"


def write(folder: Path, part: Part, kind: str, label: str | None = None) -> Path:
    """File `part` as `kind` ("good" or "defect", with `label`); returns the image's path."""
    cls = label_for(kind, label)
    image = part.inspection.frame.image
    if image is None:
        raise ValueError("this part has no image (it could not be read), so there is nothing to file")
    target_dir = folder / ("train" if cls == "good" else "test") / cls
    name = stem(part)
    target_dir.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise OSError("PNG encoding failed")
    record = {"record": part.record, "feedback": {"kind": kind, "label": cls, "filed_at": time.time()}}
    image_path = target_dir / f"{name}.png"
    _atomic(target_dir / f"{name}.json", (json.dumps(record, indent=2) + "\n").encode())
    _atomic(image_path, png.tobytes())
    for old in folder.glob(f"*/*/{name}.*"):  # filed before under another answer: the latest counts
        if old.parent != target_dir:
            old.unlink(missing_ok=True)
    return image_path


def _atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
