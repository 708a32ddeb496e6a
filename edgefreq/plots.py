"""Evaluation figures: score histograms, ROC curve, anomaly-heatmap montage (PNG files)."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def histogram(scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.histogram_bin_edges(scores, bins=30)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label=f"good ({int((labels == 0).sum())})")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"defect ({int((labels == 1).sum())})")
    ax.axvline(threshold, color="k", linestyle="--", label="calibrated threshold")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def roc(scores: np.ndarray, labels: np.ndarray, auroc: float, path: Path) -> None:
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":")
    ax.set_xlabel("false-positive rate (good flagged NOK)")
    ax.set_ylabel("true-positive rate (defect flagged NOK)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def montage(tiles: list[np.ndarray], captions: list[str], path: Path, columns: int = 6) -> None:
    """A grid of BGR tiles with a caption under each."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    cap = 14
    sheet = np.full((rows * (h + cap), columns * w, 3), 255, np.uint8)
    for i, (tile, text) in enumerate(zip(tiles, captions)):
        r, c = divmod(i, columns)
        sheet[r * (h + cap) : r * (h + cap) + h, c * w : (c + 1) * w] = tile
        cv2.putText(sheet, text[: w // 6], (c * w + 2, r * (h + cap) + h + 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1)
    cv2.imwrite(str(path), sheet)
