"""PNG figures of a run (matplotlib; sklearn's ConfusionMatrixDisplay).

Figures are made as ``matplotlib.figure.Figure`` objects, never through pyplot's global state,
so importing this module chooses no backend for the process and leaves no figure open.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from committee.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from committee.ensemble.diagnostics import N_BINS
from committee.rundir import folder as runfolder

# The curves drawn: the loss and the top-1 accuracy the report scores. The history also holds
# Keras' Precision() and Recall() (threshold 0.5 on each class's probability, one-vs-rest, all
# classes pooled): not the report's macro precision and recall, and 0.0 for a member whose
# probabilities never pass 0.5, so they are not drawn.
CURVES = (("loss", "loss (categorical cross-entropy)"), ("accuracy", "accuracy (top-1)"))
SAMPLE_ROWS, SAMPLE_COLS = 5, 15  # the sample grid; samples.npz holds at most this many

# The file name of each figure in the run folder's figures/ (runfolder.FIGURES), written by
# report.render and linked from report.md by the same name.
CONFUSION_PNG = "confusion_matrices.png"
DIVERSITY_PNG = "diversity.png"
RELIABILITY_PNG = "reliability.png"
CLASS_DISTRIBUTION_PNG = "class_distribution.png"
SAMPLES_PNG = "samples.png"
TRIALS_PNG = "trials.png"  # a search's


def curves_png(member: str) -> str:
    """The file name of ``member``'s training curves."""
    return f"curves_{member}.png"


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs):
    """``(figure, axes)`` as pyplot.subplots makes them, on a Figure of its own."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, path: str | os.PathLike) -> Path:
    with runfolder.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return Path(path)


def training_curves(name: str, history: dict[str, list[float]], path) -> Path:
    """Loss and top-1 accuracy per epoch, train and validation (:data:`CURVES`)."""
    fig, axes = _subplots(1, len(CURVES), figsize=(4 * len(CURVES) + 1, 3.6))
    for ax, (metric, title) in zip(axes, CURVES):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key, [])
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{name}: training curves")
    return save(fig, path)


def confusion_matrices(matrices: dict[str, list[list[int]]], path) -> Path:
    """One normalised confusion matrix per member and committee rule, side by side."""
    from sklearn.metrics import ConfusionMatrixDisplay

    names = list(matrices)
    fig, axes = _subplots(1, len(names), figsize=(5.2 * len(names), 5.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        cm = np.asarray(matrices[name], dtype=float)
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ConfusionMatrixDisplay(cm, display_labels=list(CLASS_NAMES)).plot(
            ax=ax, colorbar=False, values_format=".2f", xticks_rotation=90
        )
        ax.set_title(name)
        for text in ax.texts:
            text.set_fontsize(6)
    fig.tight_layout()
    return save(fig, path)


def class_distribution(counts: dict[str, list[int]], path) -> Path:
    """One bar chart of class counts per split, in the order given (e.g. train, validation,
    test; older runs have no validation). ``counts``: split -> 10 ints."""
    fig, axes = _subplots(1, len(counts), figsize=(6 * len(counts), 3.8), squeeze=False)
    for ax, (split, values) in zip(axes[0], counts.items()):
        ax.bar(range(NUM_CLASSES), values)
        ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=60, ha="right")
        ax.set_title(f"{split}: {sum(values):,} images")
    fig.tight_layout()
    return save(fig, path)


def sample_grid(
    images: np.ndarray, labels: np.ndarray, path, rows: int = SAMPLE_ROWS, cols: int = SAMPLE_COLS
) -> Path:
    """A rows x cols grid of images (uint8 (n, 28, 28)) titled with their class names."""
    fig, axes = _subplots(rows, cols, figsize=(cols * 1.1, rows * 1.35))
    for ax, i in zip(axes.flat, range(rows * cols)):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray_r")
            ax.set_title(CLASS_NAMES[int(labels[i])], fontsize=6)
    fig.tight_layout()
    return save(fig, path)


def diversity_matrices(diversity: dict[str, dict[str, float]], names: list[str], path) -> Path:
    """Member x member heat maps of disagreement, Yule's Q and double fault."""
    measures = (
        ("disagreement", "disagreement"),
        ("q_statistic", "Yule's Q"),
        ("double_fault", "double fault"),
    )
    fig, axes = _subplots(1, 3, figsize=(4.6 * 3, 4.2))
    for ax, (key, title) in zip(axes, measures):
        grid = np.full((len(names), len(names)), np.nan)
        for pair, values in diversity.items():
            a, b = pair.split("|")
            i, j = names.index(a), names.index(b)
            grid[i, j] = grid[j, i] = values[key]
        image = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=45)
        ax.set_yticks(range(len(names)), names)
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save(fig, path)


def reliability_diagram(reliability: dict[str, dict[str, list]], path) -> Path:
    """Accuracy against mean confidence per bin, one line per member and committee rule."""
    fig, ax = _subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    for name, bins in reliability.items():
        points = [(c, a) for c, a in zip(bins["confidence"], bins["accuracy"]) if c is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", ms=3, label=name)
    ax.set_xlabel("mean confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability ({N_BINS} bins)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save(fig, path)


def trial_curves(curves: dict[str, list[tuple[list, list]]], path) -> Path:
    """Validation accuracy of every trial over its running time, one panel per member.
    ``curves``: member -> one ``(seconds, accuracies)`` pair per trial."""
    fig, axes = _subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (name, trials) in zip(axes[0], curves.items()):
        for seconds, accuracy in trials:
            ax.plot(seconds, accuracy, marker="o", ms=3, alpha=0.8)
        ax.set_title(f"{name}: trials")
        ax.set_xlabel("trial time (s)")
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, path)
