"""Score members and the committee with scikit-learn's metrics.

The committee's figures are computed from the committee's own probabilities
(``argmax(mean of the members' probabilities)`` for the ``mean`` rule) — never as the mean of
the members' metrics, which is what the seed notebook wrongly reported.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn import metrics as skm

from committee.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from committee.ensemble import fusion
from committee.ensemble.diagnostics import clip_probas, diagnose

LABELS = list(range(NUM_CLASSES))
WEIGHT_FOLDS = 5  # cross-fitting folds for the weighted rule's validation accuracy


def score_probas(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1 and log loss of one probability array.

    ``y_true`` int ``(n,)``; ``proba`` ``(n, 10)``.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(y_true), len(LABELS)):
        raise ValueError(
            f"probabilities of shape {proba.shape} for {len(y_true)} labels; "
            f"expected ({len(y_true)}, {len(LABELS)})"
        )
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average="macro", zero_division=0
    )
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "log_loss": float(skm.log_loss(y_true, clip_probas(proba), labels=LABELS)),
    }


def out_of_fold_weighted(
    val_probas: list[np.ndarray], y_val: np.ndarray, n_splits: int = WEIGHT_FOLDS, seed: int = 0
) -> np.ndarray:
    """The weighted rule's validation probabilities, each image's from weights fitted without it.

    The validation split is cut into ``n_splits`` folds (stratified when every class present
    has that many images, else plain; shuffled with ``seed``); each fold is fused with weights
    fitted on the others. ``val_probas``: ``m`` arrays of shape ``(n, k)``; ``y_val`` ``(n,)``.
    Returns ``(n, k)``. Raises ValueError when there are fewer than 2 images to split.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y_val, dtype=np.int64)
    n_splits = min(n_splits, len(y))
    if n_splits < 2:
        raise ValueError(
            f"{len(y)} validation {'image' if len(y) == 1 else 'images'} cannot be split "
            "into folds; expected >= 2"
        )
    counts = np.bincount(y)
    stratify = counts[counts > 0].min() >= n_splits
    splitter = (StratifiedKFold if stratify else KFold)(n_splits, shuffle=True, random_state=seed)
    stacked = fusion.check_probas(val_probas)  # (m, n, k)
    fused = np.empty(stacked.shape[1:])
    for fit, held in splitter.split(np.zeros(len(y)), y):
        weights = fusion.fit_weights(list(stacked[:, fit]), y[fit])
        fused[held] = fusion.weighted_rule(list(stacked[:, held]), weights)
    return fused


def score_committee(
    test_probas: Mapping[str, np.ndarray],
    y_test: np.ndarray,
    val_probas: Mapping[str, np.ndarray] | None = None,
    y_val: np.ndarray | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Score every member and every fusion rule.

    ``test_probas`` / ``val_probas``: member name -> ``(n, 10)`` probabilities, same members
    in both. The ``weighted`` rule is fitted on the validation arrays only; it is skipped when
    they are not given. Its ``val_accuracy`` is out of fold (:func:`out_of_fold_weighted`):
    weights fitted on the very images they are scored on would flatter it; the test set uses
    weights fitted on the whole validation split. Returns ``(results, committee_probas)`` where
    ``committee_probas`` maps each rule to its ``(n_test, 10)`` test probabilities. Raises
    ValueError when the members' arrays disagree in names or shapes.
    """
    names = _check_members(test_probas, val_probas)
    tests = {name: test_probas[name] for name in names}
    validated = val_probas is not None and y_val is not None
    vals = [val_probas[name] for name in names] if validated else None

    rules = _fixed_rules(list(tests.values()))
    if vals is not None:
        weights = fusion.fit_weights(vals, y_val)
        rules[fusion.WEIGHTED] = fusion.weighted_rule(list(tests.values()), weights)

    results = _test_scores(y_test, tests, rules)
    if vals is not None:
        _add_validation_scores(results, dict(zip(names, vals)), y_val, weights)
    results.update(_against_best_member(results, tests, rules, y_test))
    results.update(diagnose(np.asarray(y_test), tests, rules))
    return results, rules


def _check_members(
    test_probas: Mapping[str, np.ndarray], val_probas: Mapping[str, np.ndarray] | None
) -> list[str]:
    """The members' names; raises ValueError unless both mappings name the same members and
    every array is ``(n, 10)`` probabilities of one shape per mapping."""
    names = list(test_probas)
    if val_probas is not None and list(val_probas) != names:
        raise ValueError(f"validation members {list(val_probas)} differ from test members {names}")
    fusion.check_probas([test_probas[n] for n in names], n_classes=len(LABELS), names=names)
    if val_probas is not None:
        fusion.check_probas([val_probas[n] for n in names], n_classes=len(LABELS), names=names)
    return names


def _fixed_rules(probas: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The rules that need no fitting: ``mean`` and ``geometric`` of ``m`` ``(n, k)`` arrays."""
    return {fusion.MEAN: fusion.mean_rule(probas), fusion.GEOMETRIC: fusion.geometric_rule(probas)}


def _accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(skm.accuracy_score(y_true, np.asarray(proba).argmax(axis=1)))


def _test_scores(
    y_test: np.ndarray, members: Mapping[str, np.ndarray], rules: Mapping[str, np.ndarray]
) -> dict:
    """``members`` (name -> proba) and ``committee`` (rule -> proba) figures of
    :func:`score_probas`, and the classification report and confusion matrix of each, keyed
    by member name or ``committee_<rule>``; members first."""
    results: dict = {
        "members": {},
        "committee": {},
        "classification_report": {},
        "confusion_matrix": {},
    }
    scored = [("members", name, name, proba) for name, proba in members.items()]
    scored += [("committee", rule, f"committee_{rule}", proba) for rule, proba in rules.items()]
    for section, key, name, proba in scored:
        results[section][key] = score_probas(y_test, proba)
        y_pred = np.asarray(proba).argmax(axis=1)
        results["classification_report"][name] = skm.classification_report(
            y_test,
            y_pred,
            labels=LABELS,
            target_names=list(CLASS_NAMES),
            output_dict=True,
            zero_division=0,
        )
        results["confusion_matrix"][name] = skm.confusion_matrix(
            y_test, y_pred, labels=LABELS
        ).tolist()
    return results


def _add_validation_scores(
    results: dict, vals: Mapping[str, np.ndarray], y_val: np.ndarray, weights: np.ndarray
) -> None:
    """Add each member's and rule's ``val_accuracy`` (the weighted rule's out of fold) and
    the fitted ``weights`` (member -> weight) to ``results``."""
    for name, proba in vals.items():
        results["members"][name]["val_accuracy"] = _accuracy(y_val, proba)
    probas = list(vals.values())
    val_rules = {**_fixed_rules(probas), fusion.WEIGHTED: out_of_fold_weighted(probas, y_val)}
    for rule, proba in val_rules.items():
        results["committee"][rule]["val_accuracy"] = _accuracy(y_val, proba)
    results["weights"] = dict(zip(vals, map(float, weights)))


def _against_best_member(
    results: dict,
    tests: Mapping[str, np.ndarray],
    rules: Mapping[str, np.ndarray],
    y_test: np.ndarray,
) -> dict:
    """``best_member`` (by test accuracy), each rule's ``gain_over_best_member`` in accuracy,
    and ``oracle_accuracy``: the share of test images at least one member gets right."""
    members = results["members"]
    best = max(tests, key=lambda n: members[n]["accuracy"])
    correct = np.stack([np.asarray(p).argmax(axis=1) == y_test for p in tests.values()])
    return {
        "best_member": best,
        "gain_over_best_member": {
            rule: results["committee"][rule]["accuracy"] - members[best]["accuracy"]
            for rule in rules
        },
        "oracle_accuracy": float(correct.any(axis=0).mean()),
    }
