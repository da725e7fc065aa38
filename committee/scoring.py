"""Score members and the committee with scikit-learn's metrics.

The committee's figures are computed from the committee's own probabilities
(``argmax(mean of the members' probabilities)`` for the ``mean`` rule) — never as the mean of
the members' metrics, which is what the seed notebook wrongly reported.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from sklearn import metrics as skm

from committee import fusion
from committee.data import CLASS_NAMES
from committee.diagnostics import diagnose

LABELS = list(range(len(CLASS_NAMES)))


def _clip(proba: np.ndarray) -> np.ndarray:
    """Probabilities kept away from 0 and renormalised (float32 rows sum to 1 +/- 1e-6)."""
    clipped = np.clip(proba, 1e-7, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


def score_probas(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1 and log loss of one probability array.

    ``y_true`` int ``(n,)``; ``proba`` ``(n, 10)``.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(y_true), len(LABELS)):
        raise ValueError(f"probabilities of shape {proba.shape} for {len(y_true)} labels; "
                         f"expected ({len(y_true)}, {len(LABELS)})")
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average="macro", zero_division=0)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "log_loss": float(skm.log_loss(y_true, _clip(proba), labels=LABELS)),
    }


def score_committee(
    test_probas: Mapping[str, np.ndarray],
    y_test: np.ndarray,
    val_probas: Mapping[str, np.ndarray] | None = None,
    y_val: np.ndarray | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Score every member and every fusion rule.

    ``test_probas`` / ``val_probas``: member name -> ``(n, 10)`` probabilities, same members
    in both. The ``weighted`` rule is fitted on the validation arrays only; it is skipped when
    they are not given. Returns ``(results, committee_probas)`` where ``committee_probas`` maps
    each rule to its ``(n_test, 10)`` test probabilities.
    """
    names = list(test_probas)
    if val_probas is not None and list(val_probas) != names:
        raise ValueError(f"validation members {list(val_probas)} differ from test members {names}")
    tests = [test_probas[n] for n in names]
    fusion.check_probas(tests, n_classes=len(LABELS), names=names)
    if val_probas is not None:
        fusion.check_probas([val_probas[n] for n in names], n_classes=len(LABELS), names=names)

    rules: dict[str, np.ndarray] = {"mean": fusion.mean_rule(tests),
                                    "geometric": fusion.geometric_rule(tests)}
    weights = None
    if val_probas is not None and y_val is not None:
        vals = [val_probas[n] for n in names]
        weights = fusion.fit_weights(vals, y_val)
        rules["weighted"] = fusion.weighted_rule(tests, weights)

    results: dict = {"members": {}, "committee": {}, "classification_report": {},
                     "confusion_matrix": {}}
    for name, proba in list(zip(names, tests)) + [(f"committee_{r}", p) for r, p in rules.items()]:
        figures = score_probas(y_test, proba)
        if name.startswith("committee_"):
            results["committee"][name.removeprefix("committee_")] = figures
        else:
            results["members"][name] = figures
        y_pred = np.asarray(proba).argmax(axis=1)
        results["classification_report"][name] = skm.classification_report(
            y_test, y_pred, labels=LABELS, target_names=list(CLASS_NAMES),
            output_dict=True, zero_division=0)
        results["confusion_matrix"][name] = skm.confusion_matrix(
            y_test, y_pred, labels=LABELS).tolist()

    if val_probas is not None and y_val is not None:
        for name in names:
            results["members"][name]["val_accuracy"] = float(
                skm.accuracy_score(y_val, np.asarray(val_probas[name]).argmax(axis=1)))
        val_rules = {"mean": fusion.mean_rule(vals), "geometric": fusion.geometric_rule(vals),
                     "weighted": fusion.weighted_rule(vals, weights)}
        for rule, proba in val_rules.items():
            results["committee"][rule]["val_accuracy"] = float(
                skm.accuracy_score(y_val, proba.argmax(axis=1)))
        results["weights"] = dict(zip(names, map(float, weights)))

    best = max(names, key=lambda n: results["members"][n]["accuracy"])
    correct = np.stack([np.asarray(p).argmax(axis=1) == y_test for p in tests])
    results["best_member"] = best
    results["gain_over_best_member"] = {
        rule: results["committee"][rule]["accuracy"] - results["members"][best]["accuracy"]
        for rule in rules}
    results["oracle_accuracy"] = float(correct.any(axis=0).mean())
    results.update(diagnose(np.asarray(y_test), dict(zip(names, tests)), rules))
    return results, rules
