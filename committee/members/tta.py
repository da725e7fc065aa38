"""Test-time augmentation: the views of the images a member's probabilities are averaged over.

Pure NumPy; a member's spec names its mode (``MemberSpec.tta``) and
:func:`committee.training.prediction.predict_proba` averages the model over these views.
"""

from __future__ import annotations

import numpy as np

_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (rows, columns), in pixels


# Test-time augmentation: mode -> (mirrorings, shifts); each pair of the two is one view.
_TTA = {
    "none": ((False,), _SHIFTS[:1]),
    "mirror": ((False, True), _SHIFTS[:1]),
    "mirror+shifts": ((False, True), _SHIFTS),
}


TTA_MODES: dict[str, int] = {
    mode: len(flips) * len(shifts)  # mode -> views averaged
    for mode, (flips, shifts) in _TTA.items()
}


def tta_plan(mode: str) -> tuple[tuple[bool, ...], tuple[tuple[int, int], ...]]:
    """``mode``'s views as ``(mirrorings, shifts)``: each pair of a mirroring (horizontal, or
    not) and a shift ``(rows, columns)`` in pixels is one view, in :func:`tta_views`' order
    (mirroring outer). Raises ValueError for an unknown ``mode``."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta {mode!r} is unknown; expected one of {', '.join(TTA_MODES)}")
    return _TTA[mode]


def tta_views(x: np.ndarray, mode: str = "none"):
    """Yield the views of ``x`` (``(n, 28, 28, 1)``) that test-time augmentation averages.

    ``none``: ``x`` only. ``mirror``: ``x`` and its horizontal mirror. ``mirror+shifts``: those
    two, each also shifted by one pixel up, down, left and right (10 views; vacated pixels are
    0, the background, as in the training shifts' constant fill). ``TTA_MODES[mode]`` views in
    all, each of ``x``'s shape and dtype. Raises ValueError for an unknown ``mode``.
    """
    flips, shifts = tta_plan(mode)
    if mode == "none":  # the default: no padded copies
        yield x
        return
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows, cols = x.shape[1], x.shape[2]
    for flip in flips:
        source = padded[:, :, ::-1] if flip else padded
        for dy, dx in shifts:
            yield np.ascontiguousarray(source[:, 1 - dy : 1 - dy + rows, 1 - dx : 1 - dx + cols])
