"""The run folder as the one door to the disk: no write follows a link out of it, nothing that
is not a regular file is opened (no hang on a FIFO), and --overwrite refuses a tree holding
files the tool never writes (no Ray, no Keras: the folders are made here)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import no_hang

from committee.app import progress
from committee.app.cli import log_failure
from committee.report.render import read_samples
from committee.rundir import folder as runfolder
from committee.rundir import member_files, schema

IDENTITY = {"format": 1, "kind": "run", "seed": 0, "members": {}}


def _run(tmp_path, complete=True):
    run = tmp_path / "runs" / "x"
    runfolder.prepare(run, runfolder.check(run, IDENTITY), {"identity": IDENTITY})
    if complete:
        runfolder.write_json(run / runfolder.RESULTS, {}, run)
        runfolder.finish(run)
    return run


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def test_a_write_onto_a_link_is_refused_and_writes_nothing(tmp_path, victim):
    run = _run(tmp_path)
    (run / runfolder.REPORT).symlink_to(victim)
    with pytest.raises(runfolder.RunFolderError, match=r"report.md is a symbolic link; expected"):
        runfolder.write_text(run / runfolder.REPORT, "new", run)
    assert victim.read_text() == "precious\n" and (run / runfolder.REPORT).is_symlink()


@pytest.mark.parametrize("folder", [runfolder.MODELS, runfolder.MEMBERS, runfolder.LOGS])
def test_a_write_below_a_linked_folder_is_refused(tmp_path, folder):
    run, elsewhere = _run(tmp_path, complete=False), tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / folder).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(runfolder.RunFolderError, match=rf"x/{folder} is a symbolic link"):
        runfolder.write_npz(run / folder / "m.npz", run, val=np.zeros(1))
    with pytest.raises(runfolder.RunFolderError, match=rf"x/{folder} is a symbolic link"):
        runfolder.check(run, IDENTITY)  # a resumption is refused before any work
    assert list(elsewhere.iterdir()) == []


def test_the_lock_is_never_taken_through_a_link(tmp_path, victim):
    run = _run(tmp_path)
    (run.parent / ".x.lock").symlink_to(victim)
    with pytest.raises(runfolder.RunFolderError, match=r"\.x\.lock is a symbolic link"):
        with runfolder.RunLock(run):
            pass
    assert victim.read_text() == "precious\n"


def test_logs_are_never_written_through_a_link(tmp_path, victim):
    run = _run(tmp_path)
    (run / runfolder.LOGS).mkdir()
    (run / runfolder.LOGS / "error.log").symlink_to(victim)
    written = log_failure(RuntimeError("boom"), run)
    assert written.parent != run / runfolder.LOGS and "boom" in written.read_text()
    written.unlink()
    (run / runfolder.LOGS / "m.log").symlink_to(victim)
    display = progress.Display(
        ["m"], stream=open(os.devnull, "w"), live=False, log_dir=run / "logs"
    )
    with pytest.raises(runfolder.RunFolderError, match=r"m.log is a symbolic link"):
        display._append("m", "epoch 1")
    assert victim.read_text() == "precious\n"


def test_fifos_are_refused_not_waited_on(tmp_path):
    run = _run(tmp_path)
    os.unlink(run / runfolder.RESULTS)
    os.mkfifo(run / runfolder.RESULTS)
    os.mkfifo(run / runfolder.SAMPLES)
    with no_hang():
        with pytest.raises(runfolder.RunFolderError, match=r"results.json is a FIFO; expected"):
            schema.read_results(run / runfolder.RESULTS)
        with pytest.raises(runfolder.RunFolderError, match=r"samples.npz is a FIFO; expected"):
            read_samples(run / runfolder.SAMPLES)
        with pytest.raises(runfolder.RunFolderError, match=r"results.json is a FIFO"):
            runfolder.write_json(run / runfolder.RESULTS, {}, run)
    config = _run(tmp_path / "z", complete=False) / runfolder.CONFIG
    os.unlink(config)
    os.mkfifo(config)
    with no_hang(), pytest.raises(runfolder.RunFolderError, match=r"config.json is a FIFO"):
        runfolder.check(config.parent, IDENTITY)


def test_a_socket_is_named_as_one_where_a_file_is_read(tmp_path):
    """A socket cannot even be opened (ENXIO): the refusal still says what it is."""
    import socket

    run = _run(tmp_path)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(run / runfolder.SAMPLES))
        with pytest.raises(runfolder.RunFolderError, match=r"samples.npz is a socket; expected"):
            read_samples(run / runfolder.SAMPLES)
    finally:
        server.close()


def test_a_fifo_among_a_members_files_refuses_the_resumption_before_work(tmp_path):
    run = _run(tmp_path, complete=False)
    model, _, probs = member_files.member_paths(run, "m")
    probs.parent.mkdir()
    os.mkfifo(probs)
    with no_hang(), pytest.raises(runfolder.RunFolderError, match=r"members/m.npz is a FIFO"):
        runfolder.check(run, IDENTITY)
    with no_hang(), pytest.raises(runfolder.RunFolderError, match=r"members/m.npz is a FIFO"):
        runfolder.write_npz(probs, run, val=np.zeros(1))


@pytest.mark.parametrize(
    "nested",
    [
        "figures/my_notes.txt",
        "models/archive/model1-v1.keras.bak",
        "logs/notes",
        "figures/.hidden.png",  # a hidden name is never one the tool writes
        "train/model1/mine.txt",  # nor is anything but Ray Train's own files there
        "train/model1/checkpoint_2026-01-01_00-00-00.000000/notes.txt",
    ],
)
def test_overwrite_refuses_user_files_anywhere_in_the_tree(tmp_path, nested):
    run = _run(tmp_path)
    (run / nested).parent.mkdir(parents=True, exist_ok=True)
    (run / nested).write_text("mine")
    first = nested if nested != "models/archive/model1-v1.keras.bak" else "models/archive"
    with pytest.raises(runfolder.RunFolderError, match=rf"never writes \({first}\)"):
        runfolder.check(run, IDENTITY, overwrite=True)
    assert (run / nested).read_text() == "mine"


def test_overwrite_takes_a_tree_of_only_the_tools_files(tmp_path):
    run = _run(tmp_path)
    for name in (
        "models/model1.keras",
        "members/model1.json",
        "members/model1.npz",
        "logs/model1.log",
        "logs/error.log",
        "figures/curves_model1.png",
        "tensorboard/model1/train/events.out.tfevents.1.host.2.v2",
        "train/model1/checkpoint_2026-01-01_00-00-00.000000/state.json",
        "train/model1/checkpoint_2026-01-01_00-00-00.000000/model.keras",
        "train/model1/checkpoint_manager_snapshot.json",
        "train/model1/.validate_storage_marker",
        "train/.validate_storage_marker",
        "tune/model1/experiment_state.json",
        "models/.model1.keras.abcd1234.tmp",
    ):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("")
    assert runfolder.check(run, IDENTITY, overwrite=True) == "overwrite"
    (run / "tensorboard" / "model1" / "notes.txt").write_text("mine")
    with pytest.raises(runfolder.RunFolderError, match=r"never writes \(tensorboard/model1/notes"):
        runfolder.check(run, IDENTITY, overwrite=True)


@pytest.mark.parametrize("folder", ["train", "tune", "tensorboard"])
def test_ray_and_tensorboard_folders_hold_member_folders_only(tmp_path, folder):
    run = _run(tmp_path)
    (run / folder).mkdir()
    (run / folder / "notes.txt").write_text("mine")
    with pytest.raises(runfolder.RunFolderError, match=rf"never writes \({folder}/notes.txt\)"):
        runfolder.check(run, IDENTITY, overwrite=True)
    (run / folder / "notes.txt").unlink()
    (run / folder / "model1").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(runfolder.RunFolderError, match=rf"{folder}/model1 is a symbolic link"):
        runfolder.check(run, IDENTITY, overwrite=True)
