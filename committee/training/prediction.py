"""Class probabilities from a trained member (a Keras model or a saved ``.keras`` file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from committee.data.fashion_mnist import IMAGE_SHAPE, NUM_CLASSES
from committee.errors import MemberLoadError, one_line
from committee.members.tta import tta_views


def load_model(path: str | os.PathLike):
    """Load a ``.keras`` file in Keras' safe mode (no arbitrary code runs from the file), with
    the weights it predicts with (:func:`averaged_weights`)."""
    import keras

    return averaged_weights(keras.models.load_model(path, safe_mode=True))


def load_member(name: str, model_bytes: bytes):
    """Member ``name``'s model from its ``.keras`` file's bytes (as
    :func:`committee.rundir.finished_run.load_committee` reads them), by :func:`load_model`
    from a private temporary file. Raises :class:`MemberLoadError` (one line starting with
    ``models/<name>.keras``) when it does not load or fails :func:`check_member`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.keras"
        path.write_bytes(model_bytes)
        try:
            model = load_model(path)
        except Exception as exc:  # noqa: BLE001 - any unloadable file is reported alike
            why = one_line(exc, 200, pick="last")
            raise MemberLoadError(
                f"models/{name}.keras could not be loaded in Keras' safe "
                f"mode ({type(exc).__name__}: {why}); expected the member's "
                f"trained model as committee run saved it"
            ) from None
    check_member(name, model)
    return model


MEMBER_INPUT = (None, *IMAGE_SHAPE, 1)  # a batch of 28x28 grayscale images
MEMBER_OUTPUT = (None, NUM_CLASSES)  # a batch of class probabilities
ROW_SUM_TOLERANCE = 1e-3  # as fusion.check_probas allows


def check_member(name: str, model) -> None:
    """Raise :class:`MemberLoadError` (one line starting with ``models/<name>.keras``) unless
    ``model`` takes one input of shape (None, 28, 28, 1) and gives one output of shape
    (None, 10) that, on a probe image, is class probabilities: finite, >= 0, summing to 1.
    Checked before any image is classified, so that a wrong or broken (NaN) file is named
    as the member's, not found in the committee's fusion."""
    where = f"models/{name}.keras"
    expected = "expected the member's trained model as committee run saved it"
    shapes = [
        [tuple(tensor.shape) for tensor in getattr(model, side, None) or []]
        for side in ("inputs", "outputs")
    ]
    for shape_list, side, want in zip(shapes, ("input", "output"), (MEMBER_INPUT, MEMBER_OUTPUT)):
        if shape_list != [want]:
            found = ", ".join(map(str, shape_list)) or "none"
            raise MemberLoadError(
                f"{where} has {side} shape {found}; expected one {side} of shape {want}, "
                f"as committee run saves a member's model"
            )
    probe = np.full((1, *MEMBER_INPUT[1:]), 0.5, np.float32)
    try:
        proba = np.asarray(model(probe, training=False), np.float64)
    except Exception as exc:  # noqa: BLE001 - a model that cannot run is reported alike
        raise MemberLoadError(
            f"{where} fails on a probe image ({type(exc).__name__}: "
            f"{one_line(exc, 200, pick='last')}); {expected}"
        ) from None
    if not np.all(np.isfinite(proba)):
        raise MemberLoadError(
            f"{where} gives probabilities that are not finite (NaN or infinite) on a probe "
            f"image; {expected}"
        )
    if proba.min() < 0 or abs(proba.sum() - 1) > ROW_SUM_TOLERANCE:
        raise MemberLoadError(
            f"{where} gives outputs from {proba.min():.3g} to {proba.max():.3g} summing to "
            f"{proba.sum():.4g} on a probe image; expected class probabilities (a softmax "
            f"output: >= 0, summing to 1)"
        )


def averaged_weights(model):
    """``model`` with its optimizer's moving average of the weights in place of the weights,
    where it keeps one (a member with ``ema_momentum`` > 0: its checkpoints hold the raw
    weights to resume from, the average beside them); otherwise ``model`` unchanged. Keras'
    ``fit`` does the same at its end (``finalize_variable_values``); doing it twice is harmless."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
    if getattr(optimizer, "use_ema", False) and getattr(optimizer, "built", False):
        optimizer.finalize_variable_values(model.trainable_variables)
    return model


def predict_proba(model, x: np.ndarray, batch_size: int = 1024, tta: str = "none") -> np.ndarray:
    """Class probabilities of ``x`` (float32 ``(n, 28, 28, 1)``) as float32 ``(n, 10)``:
    the mean over the :func:`tta_views` of ``x`` (``tta``: none, mirror or mirror+shifts;
    the strong members were trained with flips and shifts, so they accept these views)."""
    probas = [
        np.asarray(model.predict(view, batch_size=batch_size, verbose=0), np.float32)
        for view in tta_views(x, tta)
    ]
    return np.mean(probas, axis=0, dtype=np.float32)
