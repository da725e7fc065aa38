"""The seed's three architectures, exactly as the notebook had them (architectures.py), and
member specs (members.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from committee.members import architectures
from committee.members import spec as members
from committee.members.spec import MemberSpec


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


def test_seed_settings():
    got = {
        s.name: (s.optimizer, s.learning_rate, s.batch_size, s.epochs, s.patience)
        for s in members.SEED_PRESET
    }
    assert got == {
        "model1": ("adam", 0.001, 32, 20, 5),
        "model2": ("sgd", 0.01, 16, 20, 5),
        "model3": ("adagrad", 0.001, 64, 20, 5),
    }


def test_seed_schedule_matches_the_notebook_recursion():
    lr, rates = 0.01, []
    for epoch in range(20):  # the notebook: keep for epochs 0..9, then lr * exp(-0.1)
        if epoch >= 10:
            lr = lr * math.exp(-0.1)
        rates.append(lr)
    assert [members.seed_schedule(e, 0.01) for e in range(20)] == pytest.approx(rates)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"architecture": "transformer"}, "architecture 'transformer' is unknown"),
        ({"optimizer": "adadelata"}, "optimizer 'adadelata' is unknown"),
        ({"learning_rate": 0}, "learning rate 0 must be a number > 0"),
        ({"learning_rate": float("nan")}, "learning rate nan must be a number > 0"),
        ({"learning_rate": "0.1"}, "learning rate '0.1' must be a number > 0"),
        ({"batch_size": 0}, "batch size 0 must be an integer > 0"),
        ({"epochs": -1}, "epochs -1 must be an integer > 0"),
        ({"epochs": 2.5}, "epochs 2.5 must be an integer > 0"),
        ({"precision": "float16"}, "precision 'float16' is unknown; expected one of float32, "),
        ({"tta": True}, "tta True is unknown; expected one of none, mirror, mirror\\+shifts"),
        ({"label_smoothing": 1.0}, "label smoothing 1.0 must be a number in \\[0, 1\\)"),
        ({"label_smoothing": -0.1}, "label smoothing -0.1 must be a number in \\[0, 1\\)"),
        ({"ema_momentum": 1}, "ema momentum 1 must be a number in \\[0, 1\\)"),
        ({"ema_momentum": "0.99"}, "ema momentum '0.99' must be a number in \\[0, 1\\)"),
        (
            {"bogus": 1},
            "member 'model1': 'bogus' is not a member setting; expected one of "
            "arch_params, architecture, batch_size",
        ),
        (
            {"arch_params": {"width": 3}},
            "member 'model1': model1 has no parameter 'width'; "
            "expected one of dense_units, filters",
        ),
        ({"architecture": "vgg", "arch_params": {"stem": 8}}, "vgg has no parameter 'stem'"),
        ({"arch_params": [("filters", 3)]}, "arch params \\[\\('filters', 3\\)\\] must be a dict"),
        (
            {"width": 8},
            "'width' is not a member setting; .* \\(a builder keyword goes in "
            "arch_params: 'arch.width' in a search space or --set\\)",
        ),
        ({"arch_params": {"filters": "wide"}}, "arch.filters 'wide' must be an integer > 0"),
        ({"arch_params": {"filters": 8.5}}, "arch.filters 8.5 must be an integer > 0"),
        ({"arch_params": {"dense_units": 0}}, "arch.dense_units 0 must be an integer > 0"),
        (
            {"architecture": "vgg", "arch_params": {"dropout": 1.5}},
            "arch.dropout 1.5 must be a number in \\[0, 1\\)",
        ),
        (
            {"architecture": "resnet", "arch_params": {"whiten": -1}},
            "arch.whiten -1 must be an integer in 0..28",
        ),
        ({"architecture": "resnet", "arch_params": {"whiten": True}}, "arch.whiten True must be"),
    ],
)
def test_spec_validation_names_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        members.SEED_PRESET[0].with_overrides(**changes)


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

    path = Path(__file__).resolve().parents[1] / "bench" / "probe_recipe.py"
    module_spec = importlib.util.spec_from_file_location("probe_recipe", path)
    probe = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(probe)
    with pytest.raises(SystemExit) as exit_info:
        probe.main(["--member", "resnet", "--set", setting, "--data-dir", "/nonexistent"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_every_builder_keyword_has_a_constraint():
    import inspect

    for name, builder in architectures.ARCHITECTURES.items():
        for keyword, parameter in inspect.signature(builder).parameters.items():
            constraint = architectures.ARCH_CONSTRAINTS[keyword]  # KeyError: add it to the table
            assert constraint.accepts(parameter.default), (name, keyword)


def test_select_members():
    chosen = members.select_members("seed", ["model3", "model1"], epochs=3, batch_size=None)
    assert [s.name for s in chosen] == ["model3", "model1"]
    assert [s.epochs for s in chosen] == [3, 3] and chosen[0].batch_size == 64
    with pytest.raises(ValueError, match="preset 'big' is unknown; expected one of seed, strong"):
        members.select_members("big")
    with pytest.raises(ValueError, match="member 'model9' is not in preset 'seed'"):
        members.select_members("seed", ["model9"])
    with pytest.raises(ValueError, match="name a member twice"):
        members.select_members("seed", ["model1", "model1"])


def test_spec_round_trips_through_a_dict():
    spec = MemberSpec("m", "model2", "sgd", 0.05, 8, epochs=2, arch_params={"dropout": 0.1})
    assert MemberSpec(**spec.to_dict()) == spec


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


def test_cosine_schedule_warms_up_then_decays():
    spec = members.STRONG_PRESET[0]
    rates = [spec.learning_rate_at(e) for e in range(spec.epochs)]
    assert rates[0] < rates[1] == pytest.approx(spec.learning_rate)
    assert all(a >= b for a, b in zip(rates[1:], rates[2:]))
    assert rates[-1] < 0.1 * spec.learning_rate


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


def test_arch_keys_name_the_builders_keywords():
    """``arch.NAME`` sets the builder's keyword NAME (merged into arch_params); other keys
    set spec fields."""
    assert members.split_arch_key("arch.dense_units") == "dense_units"
    assert members.split_arch_key("learning_rate") is None
    spec = members.SEED_PRESET[0].with_overrides(arch_params={"filters": 64})
    changed = members.apply_config(spec, {"arch.dense_units": 128, "learning_rate": 0.01})
    assert changed.arch_params == {"filters": 64, "dense_units": 128}
    assert changed.learning_rate == 0.01 and spec.arch_params == {"filters": 64}
