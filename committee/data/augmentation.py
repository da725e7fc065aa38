"""Training-time augmentation of Fashion-MNIST batches as plain NumPy array operations.

The strong members used to augment inside the model with Keras' RandomTranslation, RandomFlip
and RandomErasing layers. On the JAX backend those layers made a GPU training step about 140x
slower (their image transforms run per image); here the same transforms cost tens of
microseconds a batch on the CPU, on every backend and device (``bench/bench_steps.py`` prints
the figure). The distributions are those of the Keras layers as the preset configured them
(keras/src/layers/preprocessing/image_preprocessing/): ``tests/keras/test_augmentation.py``
checks them against the layers themselves.

No Keras and no Ray here: :func:`augment` takes and returns NumPy arrays, and
``training.AugmentedBatches`` feeds its output to ``model.fit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from committee.validation import Boolean, Interval, check

ERASED_AREA = (0.02, 0.2)  # the range each side's squared fraction is drawn from (Keras' scale)


# What each setting may be (also checked on a MemberSpec, whose fields these are).
AUGMENTATION_CONSTRAINTS = {
    "shift": Interval(float, 0, 0.5, closed="left", noun="a number"),
    "erasing": Interval(float, 0, 1, closed="both", noun="a number"),
    "flip": Boolean(also=("alternate",)),
}


@dataclass(frozen=True)
class Augmentation:
    """What a member's training batches go through, in this order (each image independently).

    ``shift``: a translation by ``U(-shift, shift)`` of the image's height and, independently,
    of its width, with bilinear interpolation and zeros coming in at the edges
    (``RandomTranslation(shift, shift, fill_mode="constant")``); 0 turns it off.
    ``flip``: a horizontal flip with probability 1/2 (``RandomFlip("horizontal")``; garments
    are left-right symmetric, never flipped vertically). ``"alternate"``: each image is flipped
    at random in the first epoch and then every other epoch, so consecutive epochs see both of
    its sides (airbench's alternating flips, arXiv 2404.00498); the caller passes the flips.
    ``erasing``: random erasing as ``RandomErasing(factor=erasing, scale=(0.02, 0.2),
    value_range=(0, 1))`` does it: an image is erased with a probability drawn from
    ``U(0, erasing)`` (so ``erasing / 2`` on average); the box's width and height are
    ``sqrt(U(0.02, 0.2))`` of the image's, placed uniformly inside it, and filled with
    ``clip(N(0, 1), 0, 1)`` noise per pixel.
    """

    shift: float = 0.0
    flip: bool | str = False
    erasing: float = 0.0

    def __post_init__(self):
        check(self, AUGMENTATION_CONSTRAINTS, name=lambda field: f"augmentation {field}")

    @property
    def active(self) -> bool:
        return bool(self.shift > 0 or self.flip or self.erasing > 0)


def augment(
    images: np.ndarray,
    augmentation: Augmentation,
    rng: np.random.Generator,
    flipped: np.ndarray | None = None,
) -> np.ndarray:
    """``images`` float ``(b, h, w)`` or ``(b, h, w, 1)`` in [0, 1], augmented as
    ``augmentation`` says with draws from ``rng`` (a ``numpy.random.Generator``); a new float32
    array of the same shape. ``flipped``: bool ``(b,)``, which images to flip, required with
    ``flip="alternate"`` (:func:`alternating_flips`) and ignored otherwise. Raises ValueError
    on another shape, a non-float dtype (uint8 images must be scaled first: data.preprocess),
    non-finite values, or alternating flips without ``flipped`` of shape ``(b,)``."""
    x = np.asarray(images)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 1):
        raise ValueError(f"images of shape {x.shape}; expected (b, h, w) or (b, h, w, 1)")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"images of dtype {x.dtype}; expected floats in [0, 1] "
            "(data.preprocess scales uint8 images)"
        )
    if not np.isfinite(x).all():
        raise ValueError("images hold NaN or infinite values; expected floats in [0, 1]")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng is {type(rng).__name__}; expected a numpy.random.Generator")
    channel = x.ndim == 4
    x = x.astype(np.float32, copy=False)
    if channel:
        x = x[..., 0]
    x = translate(x, augmentation.shift, rng) if augmentation.shift > 0 else x.copy()
    if augmentation.flip == "alternate":
        if flipped is None or np.shape(flipped) != (len(x),):
            raise ValueError(
                f"alternating flips need `flipped` of shape ({len(x)},), got "
                f"{None if flipped is None else np.shape(flipped)}"
            )
        flipped = np.asarray(flipped, dtype=bool)
        x[flipped] = x[flipped, :, ::-1]
    elif augmentation.flip:
        flipped = rng.random(len(x)) < 0.5
        x[flipped] = x[flipped, :, ::-1]
    if augmentation.erasing > 0:
        x = erase(x, augmentation.erasing, rng)
    return x[..., np.newaxis] if channel else x


def alternating_flips(n: int, seed: int, epoch: int) -> np.ndarray:
    """Which of ``n`` images are flipped in ``epoch`` (bool ``(n,)``): a seeded coin per image
    in even epochs, its opposite in odd ones."""
    first = np.random.default_rng([seed, 0xF11F]).random(n) < 0.5
    return first ^ bool(epoch % 2)


def translate(images: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Each float32 ``(h, w)`` image of ``images`` ``(b, h, w)`` moved by ``U(-shift, shift)``
    of its height and width, bilinear, zeros outside."""
    b, h, w = images.shape
    pad = math.ceil(shift * max(h, w)) + 1
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    for axis, size in ((1, h), (2, w)):
        offset = rng.uniform(-shift, shift, size=b) * size  # source = target - offset
        start = np.floor(-offset)
        frac = (-offset - start).astype(np.float32)
        index = (np.arange(size)[None, :] + start[:, None]).astype(np.int64) + pad
        shape = (b, size, 1) if axis == 1 else (b, 1, size)
        index, weight = index.reshape(shape), frac.reshape(b, 1, 1)
        padded = (1 - weight) * np.take_along_axis(
            padded, index, axis=axis
        ) + weight * np.take_along_axis(padded, index + 1, axis=axis)
    return padded.astype(np.float32)


def erase(images: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Random erasing of float32 ``images`` ``(b, h, w)`` (see :class:`Augmentation`)."""
    b, h, w = images.shape
    low, high = ERASED_AREA
    sides = np.sqrt(rng.uniform(low, high, size=(b, 2)))  # fractions of width, height
    x0 = rng.random(b) * (w - sides[:, 0] * w)
    y0 = rng.random(b) * (h - sides[:, 1] * h)
    x1, y1 = x0 + sides[:, 0] * w, y0 + sides[:, 1] * h
    chosen = np.flatnonzero(rng.random(b) < rng.uniform(0.0, factor, size=b))
    out = images.copy()
    if len(chosen):  # noise only for the few images erased
        cols, rows = np.arange(w)[None, None, :], np.arange(h)[None, :, None]
        box = (
            (cols >= x0[chosen, None, None])
            & (cols < x1[chosen, None, None])
            & (rows >= y0[chosen, None, None])
            & (rows < y1[chosen, None, None])
        )
        noise = np.clip(rng.standard_normal((len(chosen), h, w), dtype=np.float32), 0.0, 1.0)
        out[chosen] = np.where(box, noise, out[chosen])
    return out
