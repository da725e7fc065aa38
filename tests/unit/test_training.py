"""Training one member with plain Keras (no Ray): metrics, checkpoints, exact resumption."""

from __future__ import annotations

import numpy as np
import pytest

from committee.members import spec as members
from committee.members.tta import tta_views
from committee.training import device
from committee.training.device import _cpu_has_bfloat16, effective_precision
from committee.training.state import plan_epochs, recent_pace


@pytest.mark.parametrize(
    "seconds, done, budget, ceiling, expected",
    [
        (100.0, 1, 450.0, 13, 4),  # 100 s an epoch: 4 fit in 450 s
        (100.0, 1, 10_000.0, 13, 13),  # never more than the ceiling
        (100.0, 1, 50.0, 13, 1),  # at least one
        (300.0, 3, 250.0, 13, 3),  # never fewer than the epochs already done
        (250.0, 2, 1000.0, 13, 8),  # pace from several epochs: 125 s each
    ],
)
def test_plan_epochs(seconds, done, budget, ceiling, expected):
    assert plan_epochs(seconds, done, budget, ceiling) == expected


def test_plan_epochs_keeps_the_prediction_reserve():
    assert plan_epochs(100.0, 1, 450.0, 13, reserve_s=60.0) == 3  # 390 s left: 3 epochs
    assert plan_epochs(100.0, 1, 450.0, 13, reserve_s=500.0) == 1  # never below one


def test_plan_epochs_refuses_an_unmeasured_pace():
    with pytest.raises(ValueError, match="got 0 epochs in 10.0 s"):
        plan_epochs(10.0, 0, 100.0, 5)
    with pytest.raises(ValueError, match="pace 0.0 s per epoch must be > 0"):
        plan_epochs(10.0, 1, 100.0, 5, pace_s=0.0)


def test_plan_epochs_at_a_given_pace():
    # 300 s for the first 2 (tracing), 50 s each now: 700 s left buy 14 more.
    assert plan_epochs(300.0, 2, 1000.0, 30, pace_s=50.0) == 16
    assert plan_epochs(300.0, 2, 1000.0, 30, reserve_s=100.0, pace_s=50.0) == 14
    assert plan_epochs(300.0, 2, 1000.0, 10, pace_s=50.0) == 10  # the ceiling holds
    assert plan_epochs(990.0, 9, 1000.0, 30, pace_s=50.0) == 9  # too late for another


@pytest.mark.parametrize(
    "seconds, expected",
    [
        ([150.0], 150.0),  # one epoch: all there is
        ([150.0, 80.0], 80.0),  # then the first (tracing) is left out
        ([150.0, 80.0, 90.0, 100.0, 130.0], 320 / 3),  # the last three
    ],
)
def test_recent_pace(seconds, expected):
    assert recent_pace(seconds) == pytest.approx(expected)


def test_recent_pace_needs_an_epoch():
    with pytest.raises(ValueError, match="got none"):
        recent_pace([])


def test_precision_falls_back_to_float32_without_hardware_support(capsys, monkeypatch):
    # Whether a GPU is visible is decided here, so the test holds on any machine.
    monkeypatch.setattr(device, "_has_gpu", lambda: False)
    assert effective_precision("float32") == "float32"
    assert effective_precision("mixed_float16") == "float32"  # no GPU
    assert "mixed_float16 has no hardware support here" in capsys.readouterr().out
    bf16 = effective_precision("mixed_bfloat16")
    assert bf16 == ("mixed_bfloat16" if _cpu_has_bfloat16() else "float32")


def test_precision_is_kept_where_a_gpu_is_visible(capsys, monkeypatch):
    monkeypatch.setattr(device, "_has_gpu", lambda: True)
    assert effective_precision("mixed_float16") == "mixed_float16"
    assert effective_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert "no hardware support" not in capsys.readouterr().out


def test_each_tta_mode_counts_exactly_its_views():
    """The views a member's prediction is timed for (TTA_MODES) are the views averaged."""
    from committee.members import tta

    x = np.zeros((2, 28, 28, 1), np.float32)
    counted = {mode: len(list(tta_views(x, mode))) for mode in tta.TTA_MODES}
    assert counted == tta.TTA_MODES == {"none": 1, "mirror": 2, "mirror+shifts": 10}
    assert members.TTA_MODES is tta.TTA_MODES


def test_tta_views_are_the_image_its_mirror_and_one_pixel_shifts():
    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5, 1) + 1
    assert [v.shape for v in tta_views(x, "none")] == [x.shape]
    (none,) = tta_views(x, "none")
    np.testing.assert_array_equal(none, x)
    plain, mirror = tta_views(x, "mirror")
    np.testing.assert_array_equal(plain, x)
    np.testing.assert_array_equal(mirror, x[:, :, ::-1])
    views = list(tta_views(x, "mirror+shifts"))
    assert len(views) == 10
    down, up, right, left = views[1:5]
    np.testing.assert_array_equal(down[:, 1:], x[:, :-1])  # content moves down one row
    np.testing.assert_array_equal(down[:, 0], 0)  # the vacated row is background
    np.testing.assert_array_equal(up[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(right[:, :, 1:], x[:, :, :-1])
    np.testing.assert_array_equal(left[:, :, -1], 0)
    np.testing.assert_array_equal(views[5], x[:, :, ::-1])  # then the mirror's five
    np.testing.assert_array_equal(views[6][:, 1:], x[:, :-1, ::-1])
    with pytest.raises(ValueError, match="tta 'flip' is unknown; expected one of none"):
        list(tta_views(x, "flip"))
