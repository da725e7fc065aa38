"""The seed's three architectures, exactly as the notebook had them (architectures.py), and
member specs (members.py)."""

from __future__ import annotations

import numpy as np
import pytest

from committee.members import architectures
from committee.members import spec as members


def _shapes(model):
    return [tuple(layer.output.shape[1:]) for layer in model.layers]


@pytest.mark.parametrize(
    "name, total, trainable, shapes",
    [
        ("model1", 298_058, 298_058, [(13, 13, 32), (6, 6, 32), (1152,), (256,), (10,)]),
        (
            "model2",
            14_058,
            14_058,
            [
                (14, 14, 64),
                (7, 7, 64),
                (7, 7, 64),
                (3, 3, 32),
                (1, 1, 32),
                (1, 1, 32),
                (32,),
                (128,),
                (128,),
                (10,),
            ],
        ),
        (
            "model3",
            99_946,
            99_498,
            [
                (14, 14, 128),
                (7, 7, 128),
                (7, 7, 128),
                (7, 7, 128),
                (4, 4, 64),
                (2, 2, 64),
                (2, 2, 64),
                (2, 2, 64),
                (1, 1, 32),
                (1, 1, 32),
                (1, 1, 32),
                (32,),
                (128,),
                (128,),
                (10,),
            ],
        ),
    ],
)
def test_seed_architectures(name, total, trainable, shapes):
    spec = {s.name: s for s in members.SEED_PRESET}[name]
    model = spec.build()
    assert model.count_params() == total == spec.expected_params
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == trainable
    assert _shapes(model) == shapes
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("bogus=1", "member 'resnet': 'bogus' is not a member setting"),
        ("arch.depth=3", "member 'resnet': resnet has no parameter 'depth'"),
        ("arch.width=wide", "member 'resnet': arch.width 'wide' must be an integer > 0"),
        ("flip=sideways", "member 'resnet': flip 'sideways' must be true, false or 'alternate'"),
    ],
)
def test_the_probe_refuses_a_bad_setting_before_training(setting, message, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "probe_recipe.py"
    module_spec = importlib.util.spec_from_file_location("probe_recipe", path)
    probe = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(probe)
    with pytest.raises(SystemExit) as exit_info:
        probe.main(["--member", "resnet", "--set", setting, "--data-dir", "/nonexistent"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("spec", members.STRONG_PRESET, ids=lambda s: s.name)
def test_strong_members_build_and_train_one_step(spec, dataset):
    from committee.data import fashion_mnist as data
    from committee.training.loop import train_member

    model = spec.build()
    assert model.count_params() == spec.expected_params
    split = data.split_train_val(dataset.x_train, dataset.y_train, limit=160)
    model, state = train_member(
        spec.with_overrides(epochs=1, batch_size=128),
        split.x_train,
        split.y_train,
        split.x_val,
        split.y_val,
        verbose=0,
    )
    assert np.isfinite(state.history["loss"][0]) and state.epoch == 1
    # augmentation is active in training only: inference is deterministic
    x = split.x_val[:8]
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_strong_resnet_works_at_28x28_in_its_stem_only():
    import keras

    model = members.STRONG_PRESET[1].build()
    blocks = [
        layer.output.shape[1:] for layer in model.layers if isinstance(layer, keras.layers.Add)
    ]
    assert blocks == [(14, 14, 24), (7, 7, 48), (4, 4, 96)]
    full_size = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.output.shape[1] == 28
    ]
    assert [(layer.name, layer.filters) for layer in full_size] == [("whitening", 18)]


@pytest.mark.parametrize("member, size", [("resnet", 2), ("vgg", 3), ("wide", 4)])
def test_a_whitening_stem_whitens_the_training_patches_and_stays_frozen(
    member, size, dataset, tmp_path
):
    """A strong member with arch.whiten=k: its first layer a frozen k x k one, set when
    training starts, whose
    responses to the training images have unit second moment and none in common (airbench's
    whitening, its ReLU seeing each direction with both signs); it survives a checkpoint."""
    from committee.data import fashion_mnist as data
    from committee.training.checkpoint import load_checkpoint, save_checkpoint
    from committee.training.loop import train_member

    split = data.split_train_val(dataset.x_train, dataset.y_train, limit=600)
    (spec,) = members.select_members("strong", [member])
    spec = spec.with_overrides(epochs=1, batch_size=128, arch_params={"whiten": size})
    model, state = train_member(
        spec, split.x_train, split.y_train, split.x_val, split.y_val, verbose=0
    )
    layer = model.get_layer(architectures.WHITENING_LAYER)
    assert not layer.trainable and layer.filters == 2 * size**2
    np.testing.assert_allclose(
        np.asarray(layer.kernel), architectures.whitening_kernel(split.x_train, size), rtol=1e-5
    )
    save_checkpoint(tmp_path, model, state)
    restored, _ = load_checkpoint(tmp_path)
    np.testing.assert_array_equal(
        np.asarray(restored.get_layer(architectures.WHITENING_LAYER).kernel), layer.kernel
    )
    kernel = np.asarray(layer.kernel).reshape(size * size, -1)
    np.testing.assert_allclose(kernel[:, size**2 :], -kernel[:, : size**2])
    x = split.x_train[..., 0].astype(np.float64)
    patches = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
    patches = patches.reshape(-1, size * size)
    responses = patches @ kernel[:, : size**2]
    moment = responses.T @ responses / len(responses)
    eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))[::-1]
    shrink = eigenvalues / (eigenvalues + 5e-4 * eigenvalues.mean())  # what eps leaves
    np.testing.assert_allclose(moment, np.diag(shrink), atol=1e-4)
    assert shrink.min() > 0.5  # every direction is scaled up to near unit moment
    assert not architectures.init_whitening(architectures.build_resnet(), split.x_train)
    with pytest.raises(ValueError, match=r"no 3x3 patches in images of shape \(0, 28, 28, 1\)"):
        architectures.whitening_kernel(np.zeros((0, 28, 28, 1), np.float32), 3)
    with pytest.raises(ValueError, match=r"shape \(5, 28, 28\); expected \(n, h, w, 1\)"):
        architectures.whitening_kernel(np.ones((5, 28, 28), np.float32), 3)
    with pytest.raises(ValueError, match="all zero"):
        architectures.whitening_kernel(np.zeros((5, 28, 28, 1), np.float32), 3)
    for bad in (-1, True, 2.0):
        with pytest.raises(ValueError, match=rf"arch.whiten {bad!r} must be an integer >= 1"):
            architectures.build_resnet(whiten=bad)


def test_nesterov_is_sgd_with_nesterov_momentum_and_weight_decay():
    from committee.training.loop import make_optimizer

    optimizer = make_optimizer("nesterov", 0.05, ema_momentum=0.99)
    assert type(optimizer).__name__ == "SGD" and optimizer.nesterov
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 5e-3 and optimizer.use_ema
    assert not make_optimizer("sgd", 0.05).nesterov


def test_build_applies_the_precision_to_its_own_layers_only():
    import keras

    spec = members.STRONG_PRESET[0]
    assert spec.precision == "mixed_bfloat16"
    model = spec.build()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in convs)
    assert model.layers[-1].dtype_policy.name == "float32"  # probabilities in float32
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    plain = spec.build("float32")
    assert all(layer.dtype_policy.name == "float32" for layer in plain.layers)
    assert plain.count_params() == model.count_params()
