"""A tiny real hyper-parameter search on a slice: FIFO through the CLI (two members, then the
committee report), ASHA in-process with the test files made unreadable."""

from __future__ import annotations

import pytest


def test_search_space_of_the_wrong_type_is_refused():
    from committee.members import spec as members

    spec = members.SEED_PRESET[1]
    for space, expected in [
        ({"batch_size": ("choice", ["big"])}, "'batch_size': member 'model2': batch size 'big'"),
        ({"learning_rate": ("loguniform", 0, 1)}, "loguniform needs low > 0"),
        ({"arch.width": ("choice", [3])}, "model2 has no parameter 'width'"),
        ({"momentum": ("uniform", 0, 1)}, "'momentum': unknown field"),
        ({"learning_rate": ("normal", 0, 1)}, "kind one of loguniform"),
        ({"arch.dropout": ("uniform", "a", "b")}, "uniform needs two numbers"),
        # values a builder cannot take are refused here, not by Keras in a trial's worker
        ({"arch.dropout": ("uniform", 0.1, 1.5)}, "arch.dropout 1.5 must be a number in"),
        ({"arch.dense_units": ("choice", [64, "wide"])}, "arch.dense_units 'wide' must be an"),
        # (log)uniform samples are floats, which an integer field cannot take
        ({"batch_size": ("uniform", 16, 64)}, "batch size 16.0 must be an integer in 1..60000"),
        ({"arch.dense_units": ("randint", -2, 64)}, "arch.dense_units -2 must be an integer"),
    ]:
        with pytest.raises(ValueError, match=expected):
            members.validate_space(spec, space)
    for s in members.SEED_PRESET + members.STRONG_PRESET:
        members.validate_space(s, members.SEARCH_SPACES[s.name])


def test_default_config_is_the_members_own_values():
    """The first trial: the spec's fields, its arch_params, else the builder's defaults."""
    from committee.distributed import tuning
    from committee.members import spec as members

    spec = members.SEED_PRESET[0].with_overrides(arch_params={"filters": 64})
    assert tuning.default_config(spec, members.SEARCH_SPACES["model1"]) == {
        "learning_rate": 0.001,
        "batch_size": 32,
        "optimizer": "adam",
        "arch.filters": 64,
        "arch.dense_units": 256,
        "epochs": 20,
    }


def test_a_search_saved_before_the_move_unpickles_its_former_module_names():
    """tuner.pkl of a search interrupted before the package split names
    committee.tuning (its scheduler's class and helpers); restoring it finds them."""
    import pickle

    from committee.distributed import tuning

    saved = b"ccommittee.tuning\nis_default\n."  # a pickled reference, as tuner.pkl holds
    with pytest.raises(ModuleNotFoundError, match="committee.tuning"):
        pickle.loads(saved)
    with tuning._former_module_names():
        assert pickle.loads(saved) is tuning.is_default
    with pytest.raises(ModuleNotFoundError):  # only for the restore
        pickle.loads(saved)
