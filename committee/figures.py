"""PNG figures of a run (matplotlib, Agg backend; sklearn's ConfusionMatrixDisplay)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from committee import runfolder  # noqa: E402
from committee.data import CLASS_NAMES  # noqa: E402

CURVES = ("loss", "accuracy", "precision", "recall")


def _save(fig, path: str | os.PathLike) -> Path:
    with runfolder.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def training_curves(name: str, history: dict[str, list[float]], path) -> Path:
    """Loss, accuracy, precision and recall per epoch, train and validation."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, metric in zip(axes, CURVES):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key, [])
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=label)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{name}: training curves")
    return _save(fig, path)


def confusion_matrices(matrices: dict[str, list[list[int]]], path) -> Path:
    """One normalised confusion matrix per member and committee rule, side by side."""
    from sklearn.metrics import ConfusionMatrixDisplay

    names = list(matrices)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 5.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        cm = np.asarray(matrices[name], dtype=float)
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ConfusionMatrixDisplay(cm, display_labels=list(CLASS_NAMES)).plot(
            ax=ax, colorbar=False, values_format=".2f", xticks_rotation=90)
        ax.set_title(name)
        for text in ax.texts:
            text.set_fontsize(6)
    fig.tight_layout()
    return _save(fig, path)


def class_distribution(train_counts: list[int], test_counts: list[int], path) -> Path:
    """Bar charts of the class counts of the training and the test labels (each its own)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=False)
    for ax, counts, title in ((axes[0], train_counts, "train"), (axes[1], test_counts, "test")):
        ax.bar(range(len(CLASS_NAMES)), counts)
        ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=60, ha="right")
        ax.set_title(f"{title}: {sum(counts):,} images")
    fig.tight_layout()
    return _save(fig, path)


def sample_grid(images: np.ndarray, labels: np.ndarray, path, rows: int = 5,
                cols: int = 15) -> Path:
    """A rows x cols grid of images (uint8 (n, 28, 28)) titled with their class names."""
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.35))
    for ax, i in zip(axes.flat, range(rows * cols)):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray_r")
            ax.set_title(CLASS_NAMES[int(labels[i])], fontsize=6)
    fig.tight_layout()
    return _save(fig, path)
