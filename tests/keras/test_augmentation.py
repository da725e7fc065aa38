"""Batch augmentation (committee/augmentation.py) draws from the distributions of the Keras
layers it replaced, and the training batches are a pure function of (seed, epoch, batch)."""

import numpy as np
import pytest

from committee.data.augmentation import (
    Augmentation,
    alternating_flips,
    augment,
    erase,
    translate,
)
from committee.members import spec as members

N = 4000


def _impulses(n: int, row: int = 14, col: int = 14) -> np.ndarray:
    images = np.zeros((n, 28, 28, 1), np.float32)
    images[:, row, col] = 1.0
    return images


def _centres(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.asarray(images, np.float64)[..., 0]
    rows, cols = np.mgrid[:28, :28]
    mass = images.sum(axis=(1, 2))
    return mass, (images * rows).sum((1, 2)) / mass, (images * cols).sum((1, 2)) / mass


def _erased_boxes(images: np.ndarray):
    """Which images were erased, and each erased box's height and width in pixels: the
    images hold 2.0 everywhere, outside the fill's [0, 1]."""
    erased = np.asarray(images)[..., 0] < 1.5
    hit = erased.any(axis=(1, 2))
    heights = erased[hit].any(axis=2).sum(axis=1)
    widths = erased[hit].any(axis=1).sum(axis=1)
    return hit, heights, widths


def test_translation_moves_like_keras_random_translation():
    import keras

    ours = translate(_impulses(N)[..., 0], 0.05, np.random.default_rng(0))[..., None]
    layer = keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=1)
    theirs = keras.ops.convert_to_numpy(layer(_impulses(N), training=True))
    for images in (ours, theirs):
        mass, row, col = _centres(images)
        np.testing.assert_allclose(mass, 1.0, atol=1e-4)  # bilinear: nothing lost inside
        for centre in (row, col):
            assert abs(centre.mean() - 14) < 0.05
            assert np.abs(centre - 14).max() <= 0.05 * 28 + 1e-4  # up to 1.4 pixels
            # U(-1.4, 1.4) has standard deviation 1.4 / sqrt(3) = 0.808
            assert centre.std() == pytest.approx(1.4 / np.sqrt(3), rel=0.04)


def test_flips_are_horizontal_with_probability_one_half():
    import keras

    images = _impulses(N, row=3, col=5)
    ours = augment(images, Augmentation(flip=True), np.random.default_rng(0))
    theirs = keras.ops.convert_to_numpy(
        keras.layers.RandomFlip("horizontal", seed=1)(images, training=True)
    )
    for out in (ours, theirs):
        assert np.all(out[:, 3, :, 0].sum(axis=1) == 1)  # the row never changes
        flipped = out[:, 3, 22, 0] == 1
        assert np.all(flipped | (out[:, 3, 5, 0] == 1))
        assert flipped.mean() == pytest.approx(0.5, abs=0.03)


def test_erasing_matches_keras_random_erasing():
    import keras

    n = 20_000
    images = np.full((n, 28, 28, 1), 2.0, np.float32)
    ours = erase(images[..., 0], 0.1, np.random.default_rng(0))[..., None]
    layer = keras.layers.RandomErasing(
        factor=0.1, scale=(0.02, 0.2), value_range=(0.0, 1.0), seed=1
    )
    theirs = keras.ops.convert_to_numpy(layer(images, training=True))
    (hit_o, h_o, w_o), (hit_t, h_t, w_t) = _erased_boxes(ours), _erased_boxes(theirs)
    assert hit_o.mean() == pytest.approx(0.05, abs=0.006)  # U(0, 0.1) on average
    assert hit_t.mean() == pytest.approx(0.05, abs=0.006)
    for ours_side, theirs_side in ((h_o, h_t), (w_o, w_t)):
        # sqrt(U(0.02, 0.2)) of 28 pixels: 4 to 13 pixels, about 8.7 on average
        assert 3 <= ours_side.min() and ours_side.max() <= 14
        assert ours_side.mean() == pytest.approx(theirs_side.mean(), abs=0.4)
        assert ours_side.std() == pytest.approx(theirs_side.std(), rel=0.15)
    fill = ours[..., 0][ours[..., 0] < 1.5]
    assert 0 <= fill.min() and fill.max() <= 1
    assert (fill == 0).mean() == pytest.approx(0.5, abs=0.02)  # clip(N(0, 1), 0, 1)


def test_training_batches_are_reshuffled_each_epoch_and_a_resumed_epoch_repeats_them():
    from committee.training.loop import augmented_batches, one_hot

    spec = members.STRONG_PRESET[0].with_overrides(batch_size=32)
    x = np.random.default_rng(0).random((100, 28, 28, 1), dtype=np.float32)
    y = one_hot(np.arange(100) % 10)
    batches = augmented_batches(spec, x, y, seed=5, epoch=0)
    assert len(batches) == 4
    first = [batches[i] for i in range(len(batches))]
    assert sum(len(b[1]) for b in first) == 100
    batches.on_epoch_end()
    second = [batches[i] for i in range(len(batches))]
    assert not np.array_equal(first[0][1], second[0][1])  # a fresh order
    resumed = augmented_batches(spec, x, y, seed=5, epoch=1)
    for i in range(len(resumed)):
        np.testing.assert_array_equal(resumed[i][0], second[i][0])
        np.testing.assert_array_equal(resumed[i][1], second[i][1])
    # every image once per epoch: the labels' counts are those of the data
    np.testing.assert_array_equal(np.concatenate([b[1] for b in second]).sum(axis=0), y.sum(axis=0))


def test_alternating_flips_show_each_image_both_ways_in_consecutive_epochs():
    """airbench's alternating flips: a coin per image in epoch 0, then the other side every
    other epoch, whatever the order the batches take; a resumed epoch repeats them."""
    from committee.training.loop import augmented_batches, one_hot

    spec = members.STRONG_PRESET[0].with_overrides(
        batch_size=50, flip="alternate", shift=0.0, erasing=0.0
    )
    x = _impulses(200, row=3, col=5)
    y = one_hot(np.arange(200) % 10)
    batches = augmented_batches(spec, x, y, seed=7, epoch=0)

    def flips_by_image(batches):
        # which image each row is: the batch's rows in the epoch's order
        seen = np.zeros(200, bool)
        for i in range(len(batches)):
            rows = batches.order[i * 50 : (i + 1) * 50]
            seen[rows] = batches[i][0][:, 3, 22, 0] == 1
        return seen

    epochs = []
    for _ in range(3):
        epochs.append(flips_by_image(batches))
        batches.on_epoch_end()
    assert 0.35 < epochs[0].mean() < 0.65
    np.testing.assert_array_equal(epochs[1], ~epochs[0])
    np.testing.assert_array_equal(epochs[2], epochs[0])
    np.testing.assert_array_equal(epochs[0], alternating_flips(200, 7, 0))
    np.testing.assert_array_equal(
        flips_by_image(augmented_batches(spec, x, y, seed=7, epoch=1)), epochs[1]
    )
    with pytest.raises(ValueError, match=r"alternating flips need `flipped` of shape \(4,\)"):
        augment(x[:4], Augmentation(flip="alternate"), np.random.default_rng(0))


def test_strong_members_augment_their_batches_and_their_models_hold_no_random_layers():
    for spec in members.STRONG_PRESET:
        assert spec.augmentation == Augmentation(shift=0.05, flip=True, erasing=0.1)
        kinds = {type(layer).__name__ for layer in spec.build().layers}
        assert not any(kind.startswith("Random") for kind in kinds), kinds
    for spec in members.SEED_PRESET:
        assert not spec.augmentation.active
