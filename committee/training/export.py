"""A whole committee as one Keras model (``committee export``): its members, each member's
test-time augmentation and the fusion rule, built from Keras' own layers and operations only,
so that the saved ``.keras`` file loads with plain ``keras.saving.load_model(path,
safe_mode=True)`` (no custom objects, no Lambda layer) on either backend.

The model takes float32 ``(n, 28, 28, 1)`` images in [0, 1] (pixel / 255) and returns float32
``(n, 10)`` committee probabilities:

- each member's views (:func:`committee.members.tta.tta_plan`): the horizontal mirror is
  ``keras.ops.flip`` (serialised as a Keras operation), a one-pixel shift is
  ``ZeroPadding2D(1)`` then ``Cropping2D`` (the vacated pixels 0, as
  :func:`committee.members.tta.tta_views`); the views are made once and shared by the members
  with the same TTA mode;
- each member (its moving average of the weights where it keeps one, as prediction does) is a
  nested copy of its model, uncompiled, named after the member, applied to each of its views,
  the views' probabilities averaged (``Average``);
- the members' probabilities fused as :mod:`committee.ensemble.fusion`'s rules are: their
  mean (``Average``), a weighted sum (each member's ``Rescaling`` by its weight, then ``Add``)
  or their normalised geometric mean (``keras.ops.clip`` at a floor and ``keras.ops.log`` per
  member, ``Average``, ``Softmax``).

Computed in float32 throughout (the ``committee predict`` path fuses in float64): the two agree
to about 1e-6. Keras, no Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

from committee.members.architectures import INPUT_SHAPE
from committee.members.tta import tta_plan


def detached_copy(model, name: str):
    """An uncompiled copy of ``model`` (same layers, dtype policies and weights, no optimizer)
    named ``name``: nested in the committee's model, a member carries none of its training
    state, and two members built from the same architecture get distinct names."""
    config = model.get_config()
    config["name"] = name
    copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def tta_view_tensors(images, mode: str, cache: dict | None = None) -> list:
    """The symbolic views of ``images`` (a ``(None, 28, 28, 1)`` Keras tensor) that test-time
    augmentation ``mode`` averages, in :func:`committee.members.tta.tta_views`' order.
    ``cache`` (mirroring -> tensor, (mirroring, shift) -> tensor) shares views between
    members. Raises ValueError for an unknown ``mode``."""
    import keras
    from keras import layers

    flips, shifts = tta_plan(mode)
    cache = {} if cache is None else cache
    views = []
    for flip in flips:
        if flip not in cache:
            cache[flip] = keras.ops.flip(images, axis=2) if flip else images
        source = cache[flip]
        padded_key = (flip, "padded")
        for dy, dx in shifts:
            key = (flip, (dy, dx))
            if key not in cache:
                if (dy, dx) == (0, 0):
                    cache[key] = source
                else:
                    if padded_key not in cache:
                        cache[padded_key] = layers.ZeroPadding2D(
                            1, dtype="float32", name=f"pad{'_mirrored' if flip else ''}"
                        )(source)
                    cache[key] = layers.Cropping2D(
                        ((1 - dy, 1 + dy), (1 - dx, 1 + dx)),
                        dtype="float32",
                        name=f"shift{'_mirrored' if flip else ''}_{dy:+d}_{dx:+d}".replace(
                            "+", "p"
                        ).replace("-", "m"),
                    )(cache[padded_key])
            views.append(cache[key])
    return views


def committee_model(
    members: Sequence[tuple[str, object, str]],
    weights: Sequence[float] | None = None,
    log_floor: float | None = None,
    name: str = "committee",
    output_name: str = "committee",
):
    """One Keras model whose output is the committee's probabilities.

    ``members``: ``(name, model, tta)`` per member, in the run's order: a Keras model mapping
    float32 ``(n, 28, 28, 1)`` in [0, 1] to ``(n, 10)`` probabilities, and its TTA mode
    (none, mirror, mirror+shifts). The fusion: the members' mean by default; ``weights``
    (one per member, non-negative, summing to 1): their weighted sum; ``log_floor``: their
    normalised geometric mean, each probability clipped to ``[log_floor, 1]`` before its
    logarithm. Returns an uncompiled ``keras.Model`` named ``name`` with input float32
    ``(None, 28, 28, 1)`` and output float32 ``(None, 10)`` (its last layer
    ``output_name``). Raises ValueError for an unknown TTA mode, weights of the wrong count,
    or both weights and a floor."""
    import keras
    from keras import layers

    if not members:
        raise ValueError("no members given; expected at least one (name, model, tta)")
    if weights is not None and len(weights) != len(members):
        raise ValueError(f"{len(weights)} weights for {len(members)} members; expected one each")
    if weights is not None and log_floor is not None:
        raise ValueError("weights and log_floor given; expected at most one (one rule)")
    images = keras.Input(INPUT_SHAPE, dtype="float32", name="images")
    cache: dict = {}
    probas = []
    for member, model, tta in members:
        views = tta_view_tensors(images, tta, cache)
        nested = detached_copy(model, member)
        outputs = [nested(view) for view in views]
        probas.append(
            outputs[0]
            if len(outputs) == 1
            else layers.Average(dtype="float32", name=f"{member}_tta")(outputs)
        )
    if weights is not None:
        probas = [
            layers.Rescaling(float(w), dtype="float32", name=f"{member}_weight")(p)
            for (member, _, _), w, p in zip(members, weights, probas)
        ]
    if log_floor is not None:
        probas = [keras.ops.log(keras.ops.clip(p, log_floor, 1.0)) for p in probas]
    merge = layers.Add if weights is not None else layers.Average
    last = f"{output_name}_log" if log_floor is not None else output_name
    fused = (
        merge(dtype="float32", name=last)(probas)
        if len(probas) > 1
        else layers.Identity(dtype="float32", name=last)(probas[0])
    )
    if log_floor is not None:
        fused = layers.Softmax(dtype="float32", name=output_name)(fused)
    return keras.Model(images, fused, name=name)
