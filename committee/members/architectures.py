"""The members' architectures: Keras model builders, by name in :data:`ARCHITECTURES`.

A builder takes only keyword arguments (a member spec's ``arch_params``; a search space's
``arch.NAME`` keys) and returns an uncompiled model ending in a float32 softmax over the ten
classes. Keras is imported inside the builders so that importing this module stays cheap.
The figures behind the strong preset's sizes are in docs/strong-preset-log.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from committee.data.fashion_mnist import NUM_CLASSES
from committee.validation import Interval

INPUT_SHAPE = (28, 28, 1)


def build_model1(dense_units: int = 256, filters: int = 32):
    """Seed Model-1: Conv(32, 3, s2) -> MaxPool(2) -> Flatten -> Dense(256) -> Dense(10)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(filters, 3, strides=2, padding="valid", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(dense_units, activation="relu"),
            _classifier(layers),
        ],
        name="model1",
    )


def build_model2(dropout: float = 0.2, dense_units: int = 128):
    """Seed Model-2: two (Conv k2 s2 -> MaxPool -> Dropout) blocks (64, 32), Dense(128),
    Dense(10)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(64, 2, strides=2, padding="valid", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(dropout),
            layers.Conv2D(32, 2, strides=2, padding="valid", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(dropout),
            layers.Flatten(),
            layers.Dense(dense_units, activation="relu"),
            layers.Dropout(dropout),
            _classifier(layers),
        ],
        name="model2",
    )


def build_model3(dropout: float = 0.3, dense_units: int = 128):
    """Seed Model-3: Conv(k3 s2 same) blocks of 128, 64, 32 filters (pool after the first two),
    each with BatchNorm and Dropout, then Dense(128) -> Dropout -> Dense(10)."""
    import keras
    from keras import layers

    stack = [keras.Input(INPUT_SHAPE)]
    for i, filters in enumerate((128, 64, 32)):
        stack.append(layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu"))
        if i < 2:
            stack.append(layers.MaxPooling2D(2))
        stack += [layers.BatchNormalization(), layers.Dropout(dropout)]
    stack += [
        layers.Flatten(),
        layers.Dense(dense_units, activation="relu"),
        layers.Dropout(dropout),
        _classifier(layers),
    ]
    return keras.Sequential(stack, name="model3")


def _classifier(layers):
    """The softmax output, always in float32: probabilities stay exact under mixed precision."""
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")


def build_vgg(width: int = 16, dropout: float = 0.2, whiten: int = 0):
    """VGG-style: two blocks (``width``, then 2x filters) of (Conv3-BN-ReLU) x2 + MaxPool, then
    Dense(256). ``whiten`` > 0: the first convolution is a frozen whitening layer
    (:func:`whitening_layer`) instead of a learned one of ``width`` filters."""
    import keras
    from keras import layers

    stack = [keras.Input(INPUT_SHAPE)]
    for filters in (width, 2 * width):
        for _ in range(2):
            conv = (
                whitening_layer(whiten)
                if whiten and len(stack) == 1
                else layers.Conv2D(filters, 3, padding="same", use_bias=False)
            )
            stack += [conv, layers.BatchNormalization(), layers.Activation("relu")]
        stack += [layers.MaxPooling2D(2), layers.Dropout(dropout / 2)]
    stack += [
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dropout(dropout),
        _classifier(layers),
    ]
    return keras.Sequential(stack, name="vgg")


def build_resnet(width: int = 24, stem: int = 16, whiten: int = 0):
    """A small pre-activation ResNet: a Conv3(``stem``) stem at 28x28, then three stages
    (``width``, 2x, 4x) of one residual block each, every stage halving the resolution
    (14, 7, 4), global average pooling. Nothing but the stem works at 28x28: on a 2-core CPU a
    stage at that size sets the time per step (figures: docs/strong-preset-log.md).

    ``whiten`` > 0 replaces the stem (and so ``stem``) by a frozen whitening layer
    (:func:`whitening_layer`)."""
    import keras
    from keras import layers

    inputs = keras.Input(INPUT_SHAPE)
    if whiten:
        x = whitening_layer(whiten)(inputs)
    else:
        x = layers.Conv2D(stem, 3, padding="same", use_bias=False)(inputs)
    for filters in (width, 2 * width, 4 * width):
        y = layers.Activation("relu")(layers.BatchNormalization()(x))
        shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False)(y)
        y = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(y)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        x = layers.Add()([shortcut, y])
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = _classifier(layers)(x)
    return keras.Model(inputs, outputs, name="resnet")


WHITENING_LAYER = "whitening"


def whitening_layer(size: int):
    """A frozen convolution over ``size`` x ``size`` patches with ``2 * size**2`` filters,
    named ``"whitening"``: float ``(b, h, w, 1)`` -> ``(b, h, w, 2 * size**2)`` ("same"
    padding, so the resolution stays; no bias, since batch norm follows). Its kernel is set
    from the training images by :func:`init_whitening`, which the trainer calls before the
    first epoch: airbench's first layer (arXiv 2404.00498), there with "valid" padding and a
    bias. Raises ValueError unless ``size`` is an integer >= 1."""
    from keras import layers

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"arch.whiten {size!r} must be an integer >= 1 (or 0: no whitening)")
    return layers.Conv2D(
        2 * size**2, size, padding="same", use_bias=False, trainable=False, name=WHITENING_LAYER
    )


def whitening_kernel(
    images: np.ndarray, size: int, eps: float = 5e-4, chunk: int = 500
) -> np.ndarray:
    """The kernel of a patch-whitening convolution (airbench, arXiv 2404.00498): each
    eigenvector of the ``size`` x ``size`` patches' (uncentred) second-moment matrix,
    divided by the square root of its eigenvalue plus ``eps`` times the mean pixel moment, and
    its negative, so that ReLU keeps both signs. The layer's responses to these images then
    have second moments ``eigenvalue / (eigenvalue + eps * mean moment)``, ~1, and no
    cross-moments.

    ``images`` float ``(n, h, w, 1)``, summed ``chunk`` images at a time (a 4x4 patch view
    of 5,000 images would be 400 MB at once); returns float32 ``(size, size, 1, 2 * size**2)``,
    the largest eigenvalue's filters first. Raises ValueError on another shape, no patches,
    or images that are all zero."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"images of shape {x.shape}; expected (n, h, w, 1)")
    n_patches = x.shape[0] * max(0, x.shape[1] - size + 1) * max(0, x.shape[2] - size + 1)
    if not n_patches:
        raise ValueError(f"no {size}x{size} patches in images of shape {x.shape}")
    moment = np.zeros((size * size, size * size))
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk, :, :, 0].astype(np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(part, (size, size), axis=(1, 2))
        patches = windows.reshape(-1, size * size)
        moment += patches.T @ patches
    moment /= n_patches
    scale = eps * np.trace(moment) / len(moment)
    if not scale > 0:
        raise ValueError("the images are all zero; whitening needs training images")
    eigenvalues, eigenvectors = np.linalg.eigh(moment)
    filters = (eigenvectors / np.sqrt(eigenvalues + scale))[:, ::-1]  # column k: one filter
    kernel = np.concatenate([filters, -filters], axis=1)
    return kernel.reshape(size, size, 1, -1).astype(np.float32)


def init_whitening(model, images: np.ndarray, max_images: int = 5000) -> bool:
    """Set the whitening layer of the built ``model`` in place, if it has one, from the first
    ``max_images`` of ``images`` (float ``(n, 28, 28, 1)``); returns whether it had one.
    Raises ValueError as :func:`whitening_kernel` does."""
    try:
        layer = model.get_layer(WHITENING_LAYER)
    except ValueError:
        return False
    size = layer.kernel.shape[0]
    layer.kernel.assign(whitening_kernel(images[:max_images], size))
    return True


def build_wide(filters: int = 32, top: int = 128, dropout: float = 0.1, whiten: int = 0):
    """Wide and shallow: Conv5(filters) -> pool -> Conv3(filters) -> pool -> Conv3(top) at 7x7,
    each with BN, then Flatten -> Dense(256). Its one 7x7 layer costs little: the 28x28 layer
    sets the time per step (on a 2-core AVX2 CPU, 32 filters train 2x faster than 48 or 64).
    ``whiten`` > 0: the Conv5 is a frozen whitening layer instead (:func:`whitening_layer`;
    ``whiten=4`` has as many filters, 32), and ``filters`` sets the second layer only."""
    import keras
    from keras import layers

    stack = [keras.Input(INPUT_SHAPE)]
    for size, width, pool in ((5, filters, True), (3, filters, True), (3, top, False)):
        conv = (
            whitening_layer(whiten)
            if whiten and len(stack) == 1
            else layers.Conv2D(width, size, padding="same", use_bias=False)
        )
        stack += [conv, layers.BatchNormalization(), layers.Activation("relu")]
        if pool:
            stack.append(layers.MaxPooling2D(2))
    stack += [
        layers.Dropout(dropout / 2),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dropout(dropout),
        _classifier(layers),
    ]
    return keras.Sequential(stack, name="wide")


ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "model1": build_model1,
    "model2": build_model2,
    "model3": build_model3,
    "vgg": build_vgg,
    "resnet": build_resnet,
    "wide": build_wide,
}

# What each builder keyword may hold (committee.validation), checked when a member's spec is
# made (members.validate_spec): a bad value would otherwise fail inside Keras, in a worker.
_SIZE = Interval(int, 0, None, closed="neither", noun="an integer")
ARCH_CONSTRAINTS = {
    "filters": _SIZE,
    "dense_units": _SIZE,
    "width": _SIZE,
    "stem": _SIZE,
    "top": _SIZE,
    "dropout": Interval(float, 0, 1, closed="left", noun="a number"),
    "whiten": Interval(int, 0, INPUT_SHAPE[0], noun="an integer"),  # 0: no whitening layer
}
