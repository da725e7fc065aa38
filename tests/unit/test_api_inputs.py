"""The Python API's arrays (committee.load(...).predict_proba(x), .score(x, y)): what is
accepted, and each refusal one line naming the argument, what was found and what was
expected — checked without Keras (data.inputs.images_from_array, labels_from_array)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from committee.data.inputs import images_from_array, labels_from_array
from committee.errors import InputError

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize(
    "x",
    [
        PIXELS,
        PIXELS[..., np.newaxis],
        PIXELS.astype(np.int64),
        PIXELS.astype(np.float32) / 255,
        (PIXELS.astype(np.float64) / 255)[..., np.newaxis],
        (PIXELS.astype(np.float32) / 255).tolist(),
    ],
    ids=["uint8", "uint8 (n,28,28,1)", "int64", "float32", "float64 (n,28,28,1)", "list"],
)
def test_accepted_arrays_become_what_the_members_were_trained_on(x):
    from committee.data.fashion_mnist import preprocess

    images = images_from_array(x)
    assert images.dtype == np.float32 and images.shape == (3, 28, 28, 1)
    assert images.flags.c_contiguous
    # exactly the run's own preprocessing of its test images (uint8 / 255 in float32)
    np.testing.assert_allclose(images, preprocess(PIXELS), rtol=0, atol=1e-7)
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        np.testing.assert_array_equal(images, preprocess(PIXELS))


@pytest.mark.parametrize(
    "x, expected",
    [
        (
            np.zeros((2, 32, 32), np.uint8),
            "x: array of shape (2, 32, 32); expected (n, 28, 28) or (n, 28, 28, 1)",
        ),
        (
            np.zeros((28, 28), np.uint8),
            "x: array of shape (28, 28); expected (n, 28, 28) or (n, 28, 28, 1) "
            "(one image: x[np.newaxis])",
        ),
        (np.zeros((2, 28, 28, 3), np.uint8), "x: array of shape (2, 28, 28, 3); expected"),
        (
            np.zeros((0, 28, 28), np.uint8),
            "x: array of shape (0, 28, 28) holds no image; expected n >= 1",
        ),
        (
            PIXELS.astype(np.float32),
            "x: float array holds 0..255; expected floats in [0, 1] "
            "(integers 0..255 as an integer dtype such as uint8)",
        ),
        (np.full((1, 28, 28), -0.5), "x: float array holds -0.5..-0.5; expected floats in [0, 1]"),
        (
            np.full((1, 28, 28), np.nan, np.float32),
            "x: float array holds NaN or infinite values; expected floats in [0, 1]",
        ),
        (
            np.full((1, 28, 28), 256, np.int32),
            "x: int32 array holds 256..256; expected integers in 0..255",
        ),
        (
            np.full((1, 28, 28), -1, np.int8),
            "x: int8 array holds -1..-1; expected integers in 0..255",
        ),
        (
            np.zeros((1, 28, 28), bool),
            "x: array of dtype bool; expected integers 0..255 (e.g. uint8) or floats 0..1",
        ),
        (np.zeros((1, 28, 28), complex), "x: array of dtype complex128; expected"),
        ("images.npy", "x: str 'images.npy'; expected an array"),
        (None, "x: NoneType None; expected an array"),
        ([[1, 2], [3]], "x: not an array ("),
    ],
)
def test_a_bad_array_is_one_line_naming_x(x, expected):
    with pytest.raises(InputError) as error:
        images_from_array(x)
    assert str(error.value).startswith(expected), str(error.value)
    assert "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)


def test_the_argument_is_named_as_given():
    with pytest.raises(InputError, match=r"^images: array of shape \(5,\)"):
        images_from_array(np.zeros(5), "images")


def test_labels():
    np.testing.assert_array_equal(labels_from_array(np.array([0, 9, 3], np.uint8), 3), [0, 9, 3])
    assert labels_from_array([1, 2], 2).dtype == np.int64
    for y, expected in [
        (np.array([0, 1]), "y: array of shape (2,); expected (3,), one label per image"),
        (np.zeros((3, 1), int), "y: array of shape (3, 1); expected (3,), one label per image"),
        (np.array([0, 10, 2]), "y: labels 0..10; expected class labels 0..9"),
        (np.array([-1, 0, 2]), "y: labels -1..2; expected class labels 0..9"),
        (
            np.array([0.0, 1.0, 2.0]),
            "y: array of dtype float64; expected integer class labels 0..9",
        ),
        ("012", "y: str '012'; expected an array"),
    ]:
        with pytest.raises(InputError) as error:
            labels_from_array(y, 3)
        assert str(error.value) == expected


def test_importing_the_package_and_its_api_names_stays_cheap(request):
    """`import committee` and reaching `committee.load` import neither Keras, TensorFlow,
    JAX nor Ray (the unit tier blocks them: an import would fail here)."""
    import committee

    assert callable(committee.load) and callable(committee.run) and callable(committee.export)
    assert {"load", "run", "export", "CommitteeClassifier"} <= set(dir(committee))
    if getattr(request.config, "unit_blocked", False):  # else other tiers imported them
        heavy = ("tensorflow", "keras", "jax", "ray")
        assert not [m for m in sys.modules if m.split(".")[0] in heavy]
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        committee.nothing  # noqa: B018


def test_a_run_from_python_takes_the_command_lines_options_and_refuses_bad_ones_first():
    """committee.run(**options): RunOptions' fields; bad ones refused before anything starts
    (here no Ray or Keras could: the unit tier blocks them)."""
    from committee.app.options import RunOptions
    from committee.errors import UsageError

    with pytest.raises(TypeError, match=r"^run\(\) got unknown option 'epoch'; expected one of"):
        committee_run(epoch=2)
    with pytest.raises(TypeError, match="not both"):
        committee_run(RunOptions(), epochs=2)
    with pytest.raises(TypeError, match=r"^members 'model1,model3' is a string; expected a list"):
        committee_run(members="model1,model3")
    with pytest.raises(UsageError, match=r"^--limit-train 5 must"):
        committee_run(limit_train=5)
    with pytest.raises(UsageError, match=r"member 'model9'"):
        committee_run(RunOptions(members=["model9"]))


def committee_run(*args, **kwargs):
    import committee

    return committee.run(*args, **kwargs)
