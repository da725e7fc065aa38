"""tuning.summarize on a fake ResultGrid (objects with .metrics, .config, .error, as Ray Tune's
Result has): the best and the default trial, and why a search gave no result."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from committee.distributed import tuning
from committee.errors import CommitteeError, SearchError
from committee.members.spec import SEARCH_SPACES, select_members

SPEC = select_members("seed", ["model1"])[0]
SPACE = tuning.member_space(SPEC, None)
DEFAULT = {
    "learning_rate": 0.001,
    "batch_size": 32,
    "optimizer": "adam",
    "arch.filters": 32,
    "arch.dense_units": 256,
    "epochs": 20,
}
TUNED = {**DEFAULT, "learning_rate": 0.003, "batch_size": 64, "arch.filters": 64, "epochs": 10}


def trial(config=None, metrics=None, error=None):
    return SimpleNamespace(config=dict(config or DEFAULT), metrics=metrics or {}, error=error)


def reported(accuracy, epoch, checkpoint):
    return {"val_accuracy": accuracy, "epoch": epoch, "checkpoint_path": checkpoint}


def test_the_space_and_default_are_model1s_declared_ones():
    assert SPACE == SEARCH_SPACES["model1"] and list(SPACE) == list(DEFAULT)
    assert tuning.default_config(SPEC, SPACE) == DEFAULT


def test_the_best_trial_by_val_accuracy_and_the_default_trial_are_summarized():
    grid = [
        trial(DEFAULT, reported(0.90, 20, "/t/default/checkpoint_000019")),
        # Tune adds keys of its own to a trial's config; the summary keeps the space's
        trial({**TUNED, "__trial_index__": 3}, reported(0.925, 7, "/t/tuned/checkpoint_000006")),
        trial({**TUNED, "learning_rate": 0.0002}, reported(0.91, 10, "/t/other/c")),
        trial({**TUNED, "optimizer": "adamw"}, reported(0.99, 2, "/t/e"), RuntimeError("died")),
        trial({**TUNED, "optimizer": "rmsprop"}, {"loss": 0.4}),  # reported no accuracy
        trial({**TUNED, "batch_size": 128}),  # never reported
    ]
    assert tuning.summarize(SPEC, SPACE, grid) == {
        "best_config": {**TUNED},
        "best_val_accuracy": 0.925,
        "best_epochs": 7,
        "best_checkpoint": "/t/tuned/checkpoint_000006",
        "default_config": DEFAULT,
        "default_val_accuracy": 0.90,
        "default_epochs": 20,
        "default_checkpoint": "/t/default/checkpoint_000019",
        "trials": 6,
        "errored": 1,
        "tta": "none",
    }


def test_an_errored_trial_is_never_the_best_whatever_it_reported():
    grid = [
        trial(TUNED, reported(0.99, 3, "/t/errored"), error=RuntimeError("worker died")),
        trial(DEFAULT, reported(0.80, 20, "/t/default")),
    ]
    summary = tuning.summarize(SPEC, SPACE, grid)
    assert summary["best_config"] == DEFAULT and summary["best_val_accuracy"] == 0.80
    assert summary["best_checkpoint"] == summary["default_checkpoint"] == "/t/default"
    assert (summary["trials"], summary["errored"]) == (2, 1)


def test_the_default_trial_is_found_by_its_config_not_its_position():
    grid = [
        trial(TUNED, reported(0.88, 10, "/t/tuned")),
        trial({**DEFAULT, "__trial_index__": 0}, reported(0.86, 20, "/t/default")),
    ]
    summary = tuning.summarize(SPEC, SPACE, grid)
    assert summary["best_checkpoint"] == "/t/tuned"
    assert (summary["default_val_accuracy"], summary["default_epochs"]) == (0.86, 20)
    assert summary["default_checkpoint"] == "/t/default"


def test_with_no_default_trial_among_those_that_reported_its_fields_are_none():
    grid = [
        trial(TUNED, reported(0.88, 10, "/t/tuned")),
        trial(DEFAULT, error=RuntimeError("the default's worker died")),
    ]
    summary = tuning.summarize(SPEC, SPACE, grid)
    assert summary["default_config"] == DEFAULT
    assert summary["default_val_accuracy"] is None
    assert summary["default_epochs"] is None and summary["default_checkpoint"] is None
    assert summary["best_val_accuracy"] == 0.88 and summary["errored"] == 1


def test_a_trial_that_reported_no_epoch_or_checkpoint_gives_zero_epochs_and_none():
    summary = tuning.summarize(SPEC, SPACE, [trial(DEFAULT, {"val_accuracy": 0.5})])
    assert (summary["best_epochs"], summary["best_checkpoint"]) == (0, None)
    assert (summary["default_epochs"], summary["default_checkpoint"]) == (0, None)


def test_a_fixed_epochs_leaves_epochs_out_of_the_configurations():
    space = tuning.member_space(SPEC, epochs=3)
    default = {k: v for k, v in DEFAULT.items() if k != "epochs"}
    grid = [trial({**DEFAULT, "epochs": 3}, reported(0.7, 3, "/t/d"))]
    summary = tuning.summarize(SPEC, space, grid)
    assert summary["best_config"] == summary["default_config"] == default
    assert summary["default_val_accuracy"] == 0.7


@pytest.mark.parametrize("errored", [0, 1], ids=["none-errored", "some-errored"])
def test_a_time_budget_over_before_any_trial_reported_is_a_search_error(errored):
    grid = [trial(DEFAULT), trial(TUNED, {"loss": 2.3})]
    grid += [trial(TUNED, error=RuntimeError("killed"))] * errored
    with pytest.raises(SearchError) as raised:
        tuning.summarize(SPEC, SPACE, grid, time_budget_s=30.0)
    assert isinstance(raised.value, CommitteeError)
    assert str(raised.value) == (
        "no trial of model1 finished an epoch within --time-budget-s 30; expected a budget "
        "of at least one epoch plus start-up (tens of seconds to minutes): raise "
        "--time-budget-s and rerun with --overwrite"
    )


def test_when_every_trial_failed_the_error_names_the_first_trials_error():
    first = RuntimeError(
        "Traceback (most recent call last):\n  File 'worker.py', line 9\n"
        "ValueError: arch.filters 64 does not fit"
    )
    grid = [
        trial(DEFAULT, error=first),
        trial(TUNED, reported(0.9, 1, "/t/c"), error=RuntimeError("OOM")),
    ]
    for budget in (None, 600.0):  # all failed: not the budget's fault
        with pytest.raises(RuntimeError) as raised:
            tuning.summarize(SPEC, SPACE, grid, time_budget_s=budget)
        assert type(raised.value) is RuntimeError
        assert str(raised.value) == (
            "no trial of model1 reported val_accuracy: ValueError: arch.filters 64 does not fit"
        )


def test_with_no_budget_and_no_error_a_search_with_no_accuracy_says_so():
    with pytest.raises(RuntimeError) as raised:
        tuning.summarize(SPEC, SPACE, [trial(DEFAULT, {"loss": 1.0}), trial(TUNED)])
    assert type(raised.value) is RuntimeError
    assert str(raised.value) == "no trial of model1 reported val_accuracy"


def test_an_empty_grid_is_refused():
    with pytest.raises(RuntimeError, match="^no trial of model1 reported val_accuracy$"):
        tuning.summarize(SPEC, SPACE, [])


@pytest.mark.parametrize(
    "config, default",
    [
        ({**DEFAULT, "extra": 1}, True),
        ({**DEFAULT, "batch_size": 64}, False),
        ({k: v for k, v in DEFAULT.items() if k != "epochs"}, False),
    ],
    ids=["extra-keys", "one-value-differs", "a-key-missing"],
)
def test_is_default_compares_every_key_of_the_default(config, default):
    assert tuning.is_default(config, DEFAULT) is default
