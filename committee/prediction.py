"""Class probabilities from a trained member (a Keras model or a saved ``.keras`` file)."""

from __future__ import annotations

import os

import numpy as np


def load_model(path: str | os.PathLike):
    """Load a ``.keras`` file in Keras' safe mode (no arbitrary code runs from the file), with
    the weights it predicts with (:func:`averaged_weights`)."""
    import keras
    return averaged_weights(keras.models.load_model(path, safe_mode=True))


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


_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (rows, columns), in pixels
# Test-time augmentation: mode -> (mirrorings, shifts); each pair of the two is one view.
_TTA = {"none": ((False,), _SHIFTS[:1]),
        "mirror": ((False, True), _SHIFTS[:1]),
        "mirror+shifts": ((False, True), _SHIFTS)}
TTA_MODES: dict[str, int] = {mode: len(flips) * len(shifts)  # mode -> views averaged
                             for mode, (flips, shifts) in _TTA.items()}


def tta_views(x: np.ndarray, mode: str = "none"):
    """Yield the views of ``x`` (``(n, 28, 28, 1)``) that test-time augmentation averages.

    ``none``: ``x`` only. ``mirror``: ``x`` and its horizontal mirror. ``mirror+shifts``: those
    two, each also shifted by one pixel up, down, left and right (10 views; vacated pixels are
    0, the background, as in the training shifts' constant fill). ``TTA_MODES[mode]`` views in
    all, each of ``x``'s shape and dtype. Raises ValueError for an unknown ``mode``.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"tta {mode!r} is unknown; expected one of {', '.join(TTA_MODES)}")
    if mode == "none":  # the default: no padded copies
        yield x
        return
    flips, shifts = _TTA[mode]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows, cols = x.shape[1], x.shape[2]
    for flip in flips:
        source = padded[:, :, ::-1] if flip else padded
        for dy, dx in shifts:
            yield np.ascontiguousarray(source[:, 1 - dy:1 - dy + rows, 1 - dx:1 - dx + cols])


def predict_proba(model, x: np.ndarray, batch_size: int = 1024,
                  tta: str = "none") -> np.ndarray:
    """Class probabilities of ``x`` (float32 ``(n, 28, 28, 1)``) as float32 ``(n, 10)``:
    the mean over the :func:`tta_views` of ``x`` (``tta``: none, mirror or mirror+shifts;
    the strong members were trained with flips and shifts, so they accept these views)."""
    probas = [np.asarray(model.predict(view, batch_size=batch_size, verbose=0), np.float32)
              for view in tta_views(x, tta)]
    return np.mean(probas, axis=0, dtype=np.float32)
