"""A member's model is checked when it is loaded, before any image is classified
(prediction.check_member): one input (None, 28, 28, 1), one output (None, 10) that gives
class probabilities on a probe image. A failure is one line naming models/<name>.keras."""

from __future__ import annotations

import numpy as np
import pytest

from committee.errors import MemberLoadError
from committee.training.prediction import check_member, load_member


def _model(shape=(28, 28, 1), classes=10, activation="softmax", outputs=1):
    import keras

    x = keras.Input(shape)
    flat = keras.layers.Flatten()(x)
    heads = [keras.layers.Dense(classes, activation=activation)(flat) for _ in range(outputs)]
    return keras.Model(x, heads if outputs > 1 else heads[0])


def _nan_model():
    model = _model()
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    return model


CASES = {
    "nan": (_nan_model, "gives probabilities that are not finite (NaN or infinite)"),
    "five-outputs": (
        lambda: _model(outputs=5),
        "has output shape (None, 10), (None, 10), (None, 10), (None, 10), (None, 10); "
        "expected one output of shape (None, 10)",
    ),
    "32x32": (
        lambda: _model(shape=(32, 32, 1)),
        "has input shape (None, 32, 32, 1); expected one input of shape (None, 28, 28, 1)",
    ),
    "5-classes": (lambda: _model(classes=5), "has output shape (None, 5)"),
    "not-softmax": (lambda: _model(activation="relu"), "expected class probabilities"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_model_that_is_not_a_member_is_refused_naming_its_file(case, tmp_path):
    build, expected = CASES[case]
    path = tmp_path / "model1.keras"
    build().save(path)
    with pytest.raises(MemberLoadError) as error:
        load_member("model1", path.read_bytes())
    message = str(error.value)
    assert message.startswith("models/model1.keras ") and expected in message, message
    assert "\n" not in message


def test_a_member_passes():
    check_member("model1", _model())
