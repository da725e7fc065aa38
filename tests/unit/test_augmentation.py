"""Batch augmentation (committee/augmentation.py) draws from the distributions of the Keras
layers it replaced, and the training batches are a pure function of (seed, epoch, batch)."""

import numpy as np
import pytest

from committee.data.augmentation import (
    Augmentation,
    augment,
)
from committee.members import spec as members


def test_augment_is_a_pure_function_of_the_generator_and_leaves_its_input_alone():
    rng = np.random.default_rng(3)
    images = rng.random((64, 28, 28, 1), dtype=np.float32)
    before = images.copy()
    strong = Augmentation(shift=0.05, flip=True, erasing=0.1)
    first = augment(images, strong, np.random.default_rng(7))
    second = augment(images, strong, np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(images, before)
    assert first.shape == images.shape and first.dtype == np.float32
    assert not np.array_equal(first, images)
    with pytest.raises(ValueError, match=r"\(b, h, w\) or \(b, h, w, 1\)"):
        augment(np.zeros((2, 28, 28, 3), np.float32), strong, rng)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("shift", 0.5, r"shift 0.5 must be a number in \[0, 0.5\)"),
        ("shift", -0.1, r"shift -0.1 must be a number in \[0, 0.5\)"),
        ("erasing", 1.5, r"erasing 1.5 must be a number in \[0, 1\]"),
        ("flip", "yes", r"flip 'yes' must be true, false or 'alternate'"),
        ("flip", 1, r"flip 1 must be true, false or 'alternate'"),
    ],
)
def test_augmentation_settings_are_checked_in_the_spec(field, value, message):
    with pytest.raises(ValueError, match=message):
        members.STRONG_PRESET[0].with_overrides(**{field: value})


@pytest.mark.parametrize(
    "images, message",
    [
        (
            np.zeros((28, 28), np.float32),
            r"shape \(28, 28\); expected \(b, h, w\) or \(b, h, w, 1\)",
        ),
        (np.zeros((2, 28, 28, 1, 1), np.float32), r"shape \(2, 28, 28, 1, 1\)"),
        (np.zeros((2, 28, 28), np.uint8), r"dtype uint8; expected floats in \[0, 1\]"),
        (np.full((2, 28, 28), np.nan, np.float32), r"NaN or infinite values"),
    ],
)
def test_augment_refuses_what_it_cannot_augment(images, message):
    with pytest.raises(ValueError, match=message):
        augment(images, Augmentation(shift=0.05, flip=True, erasing=0.5), np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"rng is int; expected a numpy.random.Generator"):
        augment(np.zeros((2, 28, 28), np.float32), Augmentation(flip=True), 0)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"shift": -0.2}, r"augmentation shift -0.2 must be a number in \[0, 0.5\)"),
        ({"shift": float("inf")}, r"augmentation shift inf"),
        ({"erasing": 5.0}, r"augmentation erasing 5.0 must be a number in \[0, 1\]"),
        ({"flip": "no"}, r"augmentation flip 'no'"),
        ({"flip": 0}, r"augmentation flip 0 must be true, false or 'alternate'"),
    ],
)
def test_an_augmentation_is_checked_when_made(settings, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**settings)
