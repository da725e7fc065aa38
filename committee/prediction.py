"""Class probabilities from a trained member (a Keras model or a saved ``.keras`` file)."""

from __future__ import annotations

import os

import numpy as np


def load_model(path: str | os.PathLike):
    """Load a ``.keras`` file in Keras' safe mode: no arbitrary code runs from the file."""
    import keras
    return keras.models.load_model(path, safe_mode=True)


def predict_proba(model, x: np.ndarray, batch_size: int = 1024, tta: bool = False) -> np.ndarray:
    """Class probabilities of ``x`` (float32 ``(n, 28, 28, 1)``) as float32 ``(n, 10)``.

    ``tta``: average with the probabilities of the mirror images (``x[:, :, ::-1]``, a
    horizontal flip, which the strong members were trained to accept).
    """
    proba = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    if tta:
        mirrored = model.predict(np.ascontiguousarray(x[:, :, ::-1]), batch_size=batch_size,
                                 verbose=0)
        proba = (proba + np.asarray(mirrored, dtype=np.float32)) / 2
    return proba
