"""A finished member's saved files are untrusted: reused only whole and of the same identity
(no Ray: the files are made here)."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from helpers import no_hang

from committee.rundir import folder as runfolder
from committee.rundir import member_files
from committee.training.state import TrainState

IDENTITY = {"seed": 0, "spec": {"name": "m"}}


INFO = {
    "identity": IDENTITY,
    "spec": {"name": "m"},
    "history": {"loss": [1.0, 0.5]},
    "epochs_run": 2,
    "stopped_early": False,
    "started_at": 1.0,
    "finished_at": 2.0,
    "resumed_at": [],
    "epochs_planned": None,
}


def _member(tmp_path, info=INFO, model_parts=("config.json", "model.weights.h5")):
    (tmp_path / "models").mkdir()
    with zipfile.ZipFile(tmp_path / "models" / "m.keras", "w") as archive:
        for part in model_parts:
            archive.writestr(part, "{}")
    rng = np.random.default_rng(0)
    runfolder.write_npz(
        tmp_path / "members" / "m.npz",
        val=rng.dirichlet(np.ones(10), 4),
        test=rng.dirichlet(np.ones(10), 5),
    )
    runfolder.write_json(tmp_path / "members" / "m.json", info)


def test_a_whole_member_of_the_same_identity_is_reused(tmp_path):
    _member(tmp_path)
    done = member_files.load_finished_member(tmp_path, "m", IDENTITY, 4, 5)
    assert done is not None and done.reused and done.epochs_run == 2


@pytest.mark.parametrize(
    "change, words",
    [
        ({"epochs_run": "2"}, "state field 'epoch' has '2'"),
        ({"history": {"loss": ["x"]}}, "state field 'history'"),
        ({"resumed_at": [-1]}, "state field 'resumed_at'"),
        ({"started_at": None}, "started_at / finished_at missing"),
    ],
)
def test_a_member_json_of_wrong_types_is_predicted_again(tmp_path, capsys, change, words):
    _member(tmp_path, {**INFO, **change})
    assert member_files.load_finished_member(tmp_path, "m", IDENTITY, 4, 5) is None
    err = capsys.readouterr().err
    assert words in err and "predicting it again from its checkpoint" in err, err


def test_damage_is_named_in_one_warning_line(tmp_path, capsys):
    _member(tmp_path, model_parts=("notes.txt",))  # a zip, but no Keras model
    assert member_files.load_finished_member(tmp_path, "m", IDENTITY, 4, 5) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its saved files are damaged" in err[0] and "no config.json" in err[0]
    other = tmp_path / "other"
    other.mkdir()
    _member(other, info={**INFO, "identity": {**IDENTITY, "seed": 1}})
    assert member_files.load_finished_member(other, "m", IDENTITY, 4, 5) is None
    assert "trained with other settings" in capsys.readouterr().err


def test_a_checkpoint_state_of_wrong_types_is_refused():
    with pytest.raises(ValueError, match="state field 'epoch' has '1'; expected an integer"):
        TrainState.from_dict({"epoch": "1"})
    with pytest.raises(ValueError, match="state field 'surprise' is unknown"):
        TrainState.from_dict({"surprise": 1})
    assert TrainState.from_dict(json.loads(json.dumps(TrainState(epoch=3).__dict__))).epoch == 3


@pytest.mark.parametrize(
    "change, words",
    [
        ({"epochs_run": 10**30}, "state field 'epoch' is 10000000000000000000000000000"),
        ({"epochs_run": 6}, "expected at most the member's 5 epochs"),
        ({"history": {"loss": [1e308, 0.5]}}, "history 'loss' has 1e+308"),
        ({"history": {"val_accuracy": [0.5, 1.5]}}, "history 'val_accuracy' has 1.5"),
        ({"history": {"loss": [-1.0, 0.5]}}, "history 'loss' has -1.0"),
        ({"history": {"lr": [float("nan"), 1.0]}}, "history 'lr' has nan"),
        ({"history": {"loss": [1.0, 0.5, 0.4]}}, "history 'loss' has 3 values"),
        ({"resumed_at": [3]}, "field 'resumed_at' has 3; expected at most its 2 epochs"),
        ({"epochs_planned": 7}, "field 'epochs_planned' is 7"),
    ],
)
def test_a_member_json_out_of_range_is_predicted_again(tmp_path, capsys, change, words):
    identity = {**IDENTITY, "spec": {"name": "m", "epochs": 5}}
    _member(tmp_path, {**INFO, "identity": identity, **change})
    assert member_files.load_finished_member(tmp_path, "m", identity, 4, 5) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "predicting it again" in err[0], err


def test_a_damaged_checkpoint_names_the_file_that_did_not_load(tmp_path):
    """The resume warning names this file (state.json or model.keras), not always the model;
    a FIFO in its place is refused, not waited on (Keras is never imported here)."""
    from committee.errors import CheckpointError
    from committee.training.checkpoint import MODEL_FILE, STATE_FILE, load_checkpoint

    state = tmp_path / STATE_FILE
    cases = [
        (lambda: state.write_text('{"epoch": 2'), STATE_FILE, "JSONDecodeError"),
        (lambda: os.mkfifo(state), STATE_FILE, "OSError"),
        (lambda: None, STATE_FILE, "FileNotFoundError"),
    ]
    for damage, file, cause in cases:
        state.unlink(missing_ok=True)
        damage()
        with no_hang(), pytest.raises(CheckpointError) as caught:
            load_checkpoint(tmp_path, max_epochs=20)
        assert (caught.value.file, type(caught.value.cause).__name__) == (file, cause)
    state.write_text(json.dumps({**TrainState(epoch=2, history={"loss": [1.0, 0.5]}).__dict__}))
    (tmp_path / MODEL_FILE).write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(CheckpointError, match=r"^model.keras: ValueError: .* is not a \.keras"):
        load_checkpoint(tmp_path, max_epochs=20)


def test_a_checkpoint_state_out_of_range_is_refused_before_its_model_is_loaded(tmp_path):
    from committee.training.checkpoint import STATE_FILE, load_checkpoint

    state = {**TrainState(epoch=2, history={"loss": [1.0, 0.5]}).__dict__}
    (tmp_path / STATE_FILE).write_text(json.dumps({**state, "epoch": 10**30}))
    with pytest.raises(ValueError, match="expected at most the member's 20 epochs"):
        load_checkpoint(tmp_path, max_epochs=20)  # no model.keras: the state is refused first
    (tmp_path / STATE_FILE).write_text(json.dumps({**state, "history": {"loss": [1e308, 1]}}))
    with pytest.raises(ValueError, match="history 'loss' has 1e\\+308"):
        load_checkpoint(tmp_path, max_epochs=20)
    assert TrainState.from_dict(state, max_epochs=2).epoch == 2
