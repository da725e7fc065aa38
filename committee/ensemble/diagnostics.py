"""Diversity between members and calibration of members and committee.

Diversity (Kuncheva & Whitaker, 2003), on the members' correctness vectors — for members
i, k with N11 both right, N00 both wrong, N10 / N01 exactly one right:

- disagreement = (N10 + N01) / N
- Yule's Q      = (N11 N00 - N01 N10) / (N11 N00 + N01 N10)   (in [-1, 1]; 1 = same errors)
- double fault = N00 / N

Calibration: negative log-likelihood and the multiclass Brier score come from scikit-learn
(``log_loss``, ``brier_score_loss``); the expected calibration error (top-label, equal-width
bins) is written here because no dependency offers it:
``ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|``.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss

from committee.ensemble.fusion import PROBA_FLOOR

N_BINS = 15  # the equal-width confidence bins of the ECE and the reliability diagram


def pairwise_diversity(correct: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``correct``: member -> bool ``(n,)``. Returns "a|b" -> {disagreement, q, double_fault}."""
    out = {}
    for a, b in combinations(correct, 2):
        x, y = np.asarray(correct[a], bool), np.asarray(correct[b], bool)
        if x.shape != y.shape:
            raise ValueError(f"members {a} and {b} have {x.shape} and {y.shape} predictions")
        n11, n00 = float(np.sum(x & y)), float(np.sum(~x & ~y))
        n10, n01 = float(np.sum(x & ~y)), float(np.sum(~x & y))
        denominator = n11 * n00 + n01 * n10
        out[f"{a}|{b}"] = {
            "disagreement": (n10 + n01) / len(x),
            "q_statistic": (n11 * n00 - n01 * n10) / denominator if denominator else float("nan"),
            "double_fault": n00 / len(x),
        }
    return out


def clip_probas(proba: np.ndarray) -> np.ndarray:
    """Probabilities kept away from 0 and renormalised, for the log-based scores.

    ``proba`` ``(n, k)``; returns float64 ``(n, k)`` with entries in [PROBA_FLOOR, 1] and rows
    summing to 1 (+/- 1e-12), a new array (``proba`` is not modified).
    """
    clipped = np.clip(np.asarray(proba, dtype=np.float64), PROBA_FLOOR, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


def _confidence_bins(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int
) -> list[tuple[int, float | None, float | None]]:
    """``(count, mean confidence, accuracy)`` of each of ``n_bins`` equal-width top-label
    confidence bins over (0, 1], lowest first; an empty bin's means are None.
    ``y_true`` int ``(n,)``; ``proba`` ``(n, k)``."""
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_true)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            out.append(
                (int(mask.sum()), float(confidence[mask].mean()), float(correct[mask].mean()))
            )
        else:
            out.append((0, None, None))
    return out


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS
) -> float:
    """Top-label ECE with ``n_bins`` equal-width confidence bins over (0, 1]."""
    n = len(proba)
    return float(
        sum(
            count / n * abs(accuracy - confidence)
            for count, confidence, accuracy in _confidence_bins(y_true, proba, n_bins)
            if count
        )
    )


def reliability_bins(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS
) -> dict[str, list[float]]:
    """Per bin: mean confidence, accuracy and count (for the reliability diagram)."""
    bins = _confidence_bins(y_true, proba, n_bins)
    return {
        "confidence": [confidence for _, confidence, _ in bins],
        "accuracy": [accuracy for _, _, accuracy in bins],
        "count": [count for count, _, _ in bins],
    }


def calibration(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """NLL, multiclass Brier score (of the clipped probabilities) and ECE of ``proba``
    ``(n, k)`` against ``y_true`` int ``(n,)``."""
    labels = list(range(proba.shape[1]))
    clipped = clip_probas(proba)
    return {
        "nll": float(log_loss(y_true, clipped, labels=labels)),
        "brier": float(brier_score_loss(y_true, clipped, labels=labels)),
        "ece": expected_calibration_error(y_true, proba),
    }


def diagnose(
    y_true: np.ndarray,
    member_probas: Mapping[str, np.ndarray],
    committee_probas: Mapping[str, np.ndarray],
) -> dict:
    """Diversity of the members, calibration and reliability bins of members and rules."""
    correct = {n: np.asarray(p).argmax(axis=1) == y_true for n, p in member_probas.items()}
    everything = {**member_probas, **{f"committee_{r}": p for r, p in committee_probas.items()}}
    return {
        "diversity": pairwise_diversity(correct),
        "calibration": {n: calibration(y_true, p) for n, p in everything.items()},
        "reliability": {n: reliability_bins(y_true, p) for n, p in everything.items()},
    }


def uncertainty(
    committee_proba: np.ndarray, member_probas: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``(disagreement, entropy)``, each float32 ``(n,)``: the fraction of members whose
    argmax differs from the committee's, and the entropy (nats) of ``committee_proba``
    (``(n, 10)``)."""
    chosen = committee_proba.argmax(axis=1)  # (n,)
    member_classes = np.stack([p.argmax(axis=1) for p in member_probas.values()])  # (m, n)
    disagreement = (member_classes != chosen).mean(axis=0)
    p = np.asarray(committee_proba, dtype=np.float64)
    entropy = -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=1)  # 0 log 0 = 0
    return disagreement.astype(np.float32), entropy.astype(np.float32)


# --------------------------------------------------------------------------- noise of the test set

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals
NOISE_LEVEL = 0.05  # a gain whose McNemar p-value is at least this is within the noise


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95% for the default ``z``).

    Wilson, E. B. (1927), "Probable inference, the law of succession, and statistical
    inference", JASA 22(158), 209-212; as in Agresti & Coull (1998), The American Statistician
    52(2), eq. (2), without continuity correction: with p = correct / n,
    ``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``. ``n`` = 0 gives (0, 1).
    """
    if not 0 <= correct <= n:
        raise ValueError(f"{correct} correct of {n}; expected 0 <= correct <= n")
    if n == 0:
        return 0.0, 1.0
    p, z2 = correct / n, z * z
    centre = p + z2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denominator = 1 + z2 / n
    low = 0.0 if correct == 0 else max(0.0, (centre - spread) / denominator)
    high = 1.0 if correct == n else min(1.0, (centre + spread) / denominator)
    return float(low), float(high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p-value of McNemar's exact test on paired predictions.

    ``b``: images the first classifier gets right and the second wrong; ``c``: the reverse.
    Under the null hypothesis (equal accuracy) each of the ``b + c`` discordant images falls
    either way with probability 1/2, so ``p = min(1, 2 P[X <= min(b, c)])``, X ~ Binomial(b + c,
    1/2) (McNemar, Q. (1947), Psychometrika 12(2), 153-157; the exact, binomial form as in
    Fagerland, Lydersen & Laake (2013), BMC Medical Research Methodology 13:91, eq. (1)).
    No discordant image gives 1.
    """
    from scipy.stats import binom

    if b < 0 or c < 0:
        raise ValueError(f"discordant counts {b}, {c}; expected counts >= 0")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5)))


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list:
    """Accuracy on each class's images (its recall): ``n_classes`` floats, None for a class
    with no image."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = []
    for k in range(n_classes):
        mask = y_true == k
        out.append(float(np.mean(y_pred[mask] == k)) if mask.any() else None)
    return out


def noise_of_scores(
    y_true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    members: list[str],
    rules: list[str],
    n_classes: int,
) -> dict:
    """How far the test figures are from noise, from the predicted classes alone.

    ``predictions``: name -> predicted classes ``(n,)`` for each of ``members`` and each
    ``committee_<rule>`` of ``rules``. Returns ``accuracy`` (name -> accuracy, Wilson 95%
    ``low`` / ``high``, ``correct``, ``n``), ``per_class`` (name -> :func:`per_class_accuracy`),
    ``best_member`` (by test accuracy, first on ties) and ``gain`` (rule -> the rule's gain
    over the best member, ``b`` images only the rule gets right, ``c`` only the member, and
    McNemar's exact ``p_value``)."""
    y_true = np.asarray(y_true)
    correct = {name: np.asarray(pred) == y_true for name, pred in predictions.items()}
    n = len(y_true)
    accuracy = {}
    for name, right in correct.items():
        k = int(right.sum())
        low, high = wilson_interval(k, n)
        accuracy[name] = {"accuracy": k / n if n else 0.0, "low": low, "high": high}
        accuracy[name].update(correct=k, n=n)
    best = max(members, key=lambda m: accuracy[m]["correct"])
    gain = {}
    for rule in rules:
        ours, theirs = correct[f"committee_{rule}"], correct[best]
        b, c = int(np.sum(ours & ~theirs)), int(np.sum(~ours & theirs))
        gain[rule] = {
            "gain": (b - c) / n if n else 0.0,
            "b": b,
            "c": c,
            "p_value": mcnemar_exact(b, c),
        }
    return {
        "accuracy": accuracy,
        "per_class": {
            name: per_class_accuracy(y_true, pred, n_classes) for name, pred in predictions.items()
        },
        "best_member": best,
        "gain": gain,
    }
