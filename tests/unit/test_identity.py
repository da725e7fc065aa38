"""A run's identity and the seeds derived from it (no Ray)."""

from __future__ import annotations

import pytest

from committee.members import seeds
from committee.members.spec import select_members
from committee.rundir import identity

SHA = {"train-images-idx3-ubyte": "aa", "t10k-labels-idx1-ubyte": "bb"}


def _identity(members=None, **changes):
    options = dict(
        kind="run",
        preset="seed",
        seed=0,
        split="tail",
        val_fraction=0.2,
        limit_train=1000,
        data_sha256=SHA,
        time_budget_s=None,
    )
    overrides = {
        k: changes.pop(k) for k in ("epochs", "learning_rate", "batch_size") if k in changes
    }
    options.update(changes)
    return identity.run_identity(specs=select_members("seed", members, **overrides), **options)


def test_a_members_seed_comes_from_its_place_in_the_preset_not_the_command_line():
    a = _identity(["model1", "model2"])["members"]
    b = _identity(["model2", "model1"])["members"]
    c = _identity(["model3"])["members"]
    assert a["model1"]["seed"] == b["model1"]["seed"] == 0
    assert a["model2"]["seed"] == b["model2"]["seed"] == 1
    assert c["model3"]["seed"] == _identity()["members"]["model3"]["seed"] == 2
    assert a["model1"] == b["model1"]  # so a finished member is reusable across orders


def test_seeds_stay_in_range():
    top = seeds.MAX_SEED
    assert seeds.member_seed(top, "seed", "model3") == 1  # wrapped, not out of range
    assert 0 <= seeds.resume_seed(top, 30) <= top
    for bad in (-1, top + 1, 1.5, True):
        with pytest.raises(
            ValueError,
            match=r"--seed .* is out of range; expected an integer "
            r"in 0..4294967295",
        ):
            seeds.check_seed(bad)


def test_differences_name_each_changed_setting_old_to_new():
    old = _identity(["model1", "model2"], epochs=1)
    assert identity.differences(old, _identity(["model1", "model2"], epochs=1)) == []
    new = _identity(["model1", "model2"], epochs=2, split="stratified", seed=3, learning_rate=0.5)
    lines = identity.differences(old, new)
    assert "seed: 0 -> 3" in lines and "data.split: tail -> stratified" in lines
    assert "model1.epochs: 1 -> 2" in lines and "model2.learning_rate: 0.01 -> 0.5" in lines
    assert "model1.seed: 0 -> 3" in lines
    assert identity.differences(old, _identity(["model1"], epochs=1)) == [
        "members: model1,model2 -> model1"
    ]
    assert identity.differences(
        old, _identity(["model1", "model2"], epochs=1, limit_train=2000)
    ) == ["data.limit_train: 1000 -> 2000"]


def test_the_backend_is_part_of_a_runs_identity():
    """A rerun on another Keras backend (other numerics and random streams) is a difference
    named before Ray starts, not a silent mix of members trained on both."""
    old, new = _identity(), _identity(backend="jax")
    assert old["backend"] == "tensorflow"
    assert identity.differences(old, new) == ["backend: tensorflow -> jax"]


def test_a_field_added_later_is_in_the_identity_only_when_it_changes_training():
    from committee.members.spec import SPEC_FIELDS_ADDED_LATER

    plain = identity.member_identity(select_members("seed", ["model1"])[0], 0, {}, None)
    assert not set(SPEC_FIELDS_ADDED_LATER) & set(
        plain["spec"]
    )  # as recorded before the fields existed
    smoothed = select_members("seed", ["model1"])[0].with_overrides(
        label_smoothing=0.1, ema_momentum=0.99
    )
    changed = identity.member_identity(smoothed, 0, {}, None)
    assert changed["spec"]["label_smoothing"] == 0.1 and changed["spec"]["ema_momentum"] == 0.99
    old = {"members": {"model1": plain}}
    assert identity.differences(old, {"members": {"model1": changed}}) == [
        "model1.ema_momentum: 0 -> 0.99",
        "model1.label_smoothing: 0 -> 0.1",
    ]
