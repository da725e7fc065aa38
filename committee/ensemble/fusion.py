"""Score-level fusion: combine members' class probabilities into the committee's.

All functions take ``probas`` as a sequence of ``m`` arrays of shape ``(n, k)`` (rows are
probability vectors) and return one ``(n, k)`` array of probabilities.

- ``mean``: the user's rule, the arithmetic mean of the probabilities.
- ``weighted``: a convex combination whose weights are fitted on VALIDATION data by
  minimising log loss (:func:`fit_weights`); never fit them on test data.
- ``geometric``: the normalised geometric mean (mean of log-probabilities), a reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RULES = ("mean", "weighted", "geometric")
MEAN, WEIGHTED, GEOMETRIC = RULES  # each rule's name, for the code that picks one
# The least probability a logarithm sees, here and in diagnostics.clip_probas (the scores).
PROBA_FLOOR = 1e-7


def check_probas(
    probas: Sequence[np.ndarray], n_classes: int | None = None, names: Sequence[str] | None = None
) -> np.ndarray:
    """Validate and stack members' probabilities into ``(m, n, k)`` float64.

    ``names``: the members' names, used in error messages (default: ``member 0``, ...).
    Raises ValueError naming the member whose array is wrong."""
    if len(probas) == 0:
        raise ValueError("no member probabilities given; expected at least one (n, k) array")
    labels = (
        [f"member {n}" for n in names]
        if names is not None
        else [f"member {i}" for i in range(len(probas))]
    )
    stacked = []
    for i, p in enumerate(probas):
        p = np.asarray(p, dtype=np.float64)
        if p.ndim != 2:
            raise ValueError(f"{labels[i]}: probabilities have shape {p.shape}; expected (n, k)")
        if stacked and p.shape != stacked[0].shape:
            raise ValueError(
                f"{labels[i]}: shape {p.shape} differs from {labels[0]}'s "
                f"{stacked[0].shape}; expected equal shapes"
            )
        if n_classes is not None and p.shape[1] != n_classes:
            raise ValueError(f"{labels[i]}: {p.shape[1]} classes; expected {n_classes}")
        if not np.all(np.isfinite(p)) or p.min() < 0:
            raise ValueError(f"{labels[i]}: probabilities must be finite and >= 0")
        worst = float(np.abs(p.sum(axis=1) - 1).max()) if len(p) else 0.0
        if worst > 1e-3:
            raise ValueError(
                f"{labels[i]}: rows sum to 1 +/- {worst:.3g}; expected probability "
                f"rows summing to 1"
            )
        stacked.append(p)
    return np.stack(stacked)


def mean_rule(probas: Sequence[np.ndarray]) -> np.ndarray:
    return check_probas(probas).mean(axis=0)


def weighted_rule(probas: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    stacked = check_probas(probas)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(stacked),) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError(
            f"weights {list(np.round(w, 4))} must be {len(stacked)} non-negative "
            f"numbers summing to 1"
        )
    return np.tensordot(w, stacked, axes=1)


def geometric_rule(probas: Sequence[np.ndarray]) -> np.ndarray:
    logp = np.log(np.clip(check_probas(probas), PROBA_FLOOR, 1.0)).mean(axis=0)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def fit_weights(val_probas: Sequence[np.ndarray], y_val: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise log loss on the validation split.

    Parametrised by a softmax so the constraints hold by construction; optimised with
    scipy's L-BFGS from equal weights. Returns float64 ``(m,)``.
    """
    from scipy.optimize import minimize
    from scipy.special import softmax

    stacked = check_probas(val_probas)
    y = np.asarray(y_val, dtype=np.int64)
    if y.shape != (stacked.shape[1],):
        raise ValueError(f"y_val has shape {y.shape}; expected ({stacked.shape[1]},)")
    picked = stacked[:, np.arange(len(y)), y]  # (m, n): each member's prob of the true class

    def loss(z):
        return -np.mean(np.log(np.clip(softmax(z) @ picked, PROBA_FLOOR, None)))

    result = minimize(loss, np.zeros(len(stacked)), method="L-BFGS-B")
    return softmax(result.x)


def fuse(
    probas: Sequence[np.ndarray], rule: str = MEAN, weights: Sequence[float] | None = None
) -> np.ndarray:
    """Apply ``rule`` (one of :data:`RULES`) to the members' probabilities."""
    if rule == MEAN:
        return mean_rule(probas)
    if rule == GEOMETRIC:
        return geometric_rule(probas)
    if rule == WEIGHTED:
        if weights is None:
            raise ValueError(f"rule {WEIGHTED!r} needs weights fitted on validation data")
        return weighted_rule(probas, weights)
    raise ValueError(f"fusion rule {rule!r} is unknown; expected one of {', '.join(RULES)}")
