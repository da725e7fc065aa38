"""Diversity and calibration measures against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from committee.ensemble import diagnostics


def test_pairwise_diversity_by_hand():
    # a: R R R W W ; b: R W R R W  -> N11=2, N10=1 (a right only), N01=1, N00=1, N=5
    a = np.array([1, 1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 1, 0], bool)
    d = diagnostics.pairwise_diversity({"a": a, "b": b})["a|b"]
    assert d["disagreement"] == pytest.approx(2 / 5)
    assert d["double_fault"] == pytest.approx(1 / 5)
    assert d["q_statistic"] == pytest.approx((2 * 1 - 1 * 1) / (2 * 1 + 1 * 1))
    same = diagnostics.pairwise_diversity({"a": a, "c": a.copy()})["a|c"]
    assert same["disagreement"] == 0 and same["q_statistic"] == 1


def test_ece_by_hand():
    # Two samples in the 0.9 bin (one right: accuracy 0.5, confidence 0.9) and two in the
    # 0.6 bin (both right: accuracy 1.0, confidence 0.6): ECE = 0.5*0.4 + 0.5*0.4 = 0.4
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert diagnostics.expected_calibration_error(y, proba) == pytest.approx(0.4)
    bins = diagnostics.reliability_bins(y, proba)
    assert sum(bins["count"]) == 4
    assert bins["accuracy"][13] == 0.5 and bins["confidence"][13] == pytest.approx(0.9)
    assert bins["accuracy"][8] == 1.0 and bins["confidence"][8] == pytest.approx(0.6)


def test_perfectly_confident_and_right_is_perfectly_calibrated():
    y = np.array([0, 1, 2])
    proba = np.eye(3)[y]
    c = diagnostics.calibration(y, proba)
    assert c["ece"] == 0 and c["brier"] == pytest.approx(0, abs=1e-10)
    assert c["nll"] == pytest.approx(0, abs=1e-5)


def test_multiclass_brier_by_hand():
    y = np.array([0, 1])
    proba = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    # sample 1: (0.5)^2 + 0.25^2 + 0.25^2 = 0.375; sample 2: 0.5^2 + 0.75^2 + 0.25^2 = 0.875
    assert diagnostics.calibration(y, proba)["brier"] == pytest.approx((0.375 + 0.875) / 2)
