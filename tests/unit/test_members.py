"""The seed's three architectures, exactly as the notebook had them (architectures.py), and
member specs (members.py)."""

from __future__ import annotations

import math

import pytest

from committee.members import architectures
from committee.members import spec as members
from committee.members.spec import MemberSpec


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
        ({"learning_rate": 1e-320}, "learning rate 1e-320 must be a number in \\[1.17549"),
        (
            {"learning_rate": 0},
            "learning rate 0 must be a number in \\[1.17549\\d+e-38, 1e\\+38\\]",
        ),
        (
            {"learning_rate": float("nan")},
            "learning rate nan must be a number in \\[1.17549\\d+e-38, 1e\\+38\\]",
        ),
        (
            {"learning_rate": "0.1"},
            "learning rate '0.1' must be a number in \\[1.17549\\d+e-38, 1e\\+38\\]",
        ),
        ({"batch_size": 0}, "batch size 0 must be an integer in 1..60000"),
        ({"epochs": -1}, "epochs -1 must be an integer in 1..100000"),
        ({"epochs": 2.5}, "epochs 2.5 must be an integer in 1..100000"),
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


def test_cosine_schedule_warms_up_then_decays():
    spec = members.STRONG_PRESET[0]
    rates = [spec.learning_rate_at(e) for e in range(spec.epochs)]
    assert rates[0] < rates[1] == pytest.approx(spec.learning_rate)
    assert all(a >= b for a, b in zip(rates[1:], rates[2:]))
    assert rates[-1] < 0.1 * spec.learning_rate


def test_arch_keys_name_the_builders_keywords():
    """``arch.NAME`` sets the builder's keyword NAME (merged into arch_params); other keys
    set spec fields."""
    assert members.split_arch_key("arch.dense_units") == "dense_units"
    assert members.split_arch_key("learning_rate") is None
    spec = members.SEED_PRESET[0].with_overrides(arch_params={"filters": 64})
    changed = members.apply_config(spec, {"arch.dense_units": 128, "learning_rate": 0.01})
    assert changed.arch_params == {"filters": 64, "dense_units": 128}
    assert changed.learning_rate == 0.01 and spec.arch_params == {"filters": 64}
