"""checkpoints.repair on real local folders: whole checkpoints kept, torn ones and a snapshot Ray
could not resume from removed, each removal returned and logged (pyarrow, no Ray)."""

from __future__ import annotations

import json
from importlib import metadata

import pyarrow.fs as pafs
import pytest

from committee.distributed import checkpoints
from committee.rundir import storage

OLD, MID, NEW = (f"checkpoint_2025-01-0{day}_12-00-00.000000" for day in (1, 2, 3))
SNAPSHOT = "checkpoint_manager_snapshot.json"
RAY = metadata.version("ray")  # read from the installed metadata; Ray is not imported


def make_checkpoint(member, name, files=("model.keras", "state.json"), empty=()):
    folder = member / name
    folder.mkdir(parents=True)
    for file in files:
        (folder / file).write_bytes(b"" if file in empty else b"x")
    return folder


def write_snapshot(member, names, ray_version=None):
    """A snapshot as Ray Train writes it, listing the checkpoints ``names``."""
    results = [{"version": 0, "checkpoint_dir_name": n, "metrics": {}} for n in names]
    snapshot = {
        "ray_version": RAY if ray_version is None else ray_version,
        "checkpoint_results": results,
        "checkpoint_report_indices": list(range(len(names))),
        "latest_checkpoint_result": results[-1] if results else None,
    }
    (member / SNAPSHOT).write_text(json.dumps(snapshot))


def listing(member):
    return sorted(p.name for p in member.iterdir())


@pytest.fixture
def member(tmp_path):
    return tmp_path / "storage" / "model1"


def test_the_snapshot_file_name_and_the_checkpoint_files_are_ray_trains_and_ours():
    assert checkpoints.SNAPSHOT == SNAPSHOT
    assert checkpoints.FILES == ("model.keras", "state.json")


def test_checkpoint_paths_are_the_checkpoint_folders_newest_first(member):
    for name in (MID, OLD, NEW):
        make_checkpoint(member, name)
    (member / "checkpoint_notes.txt").write_text("a file, not a checkpoint")
    (member / "other_folder").mkdir()
    fs, path = storage.filesystem(str(member))
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(member)
    assert checkpoints.checkpoint_paths(fs, path) == [
        f"{member}/{NEW}",
        f"{member}/{MID}",
        f"{member}/{OLD}",
    ]


def test_a_member_folder_not_made_yet_has_no_checkpoints(member):
    assert checkpoints.checkpoint_paths(pafs.LocalFileSystem(), str(member)) == []


def test_a_checkpoint_is_whole_only_with_both_files_neither_empty(member):
    fs = pafs.LocalFileSystem()
    whole = make_checkpoint(member, NEW)
    no_state = make_checkpoint(member, MID, files=("model.keras",))
    empty_model = make_checkpoint(member, OLD, empty=("model.keras",))
    empty_folder = make_checkpoint(member, "checkpoint_0", files=())
    assert checkpoints.is_whole(fs, str(whole)) is True
    assert checkpoints.is_whole(fs, str(no_state)) is False
    assert checkpoints.is_whole(fs, str(empty_model)) is False
    assert checkpoints.is_whole(fs, str(empty_folder)) is False
    assert checkpoints.is_whole(fs, str(member / "checkpoint_missing")) is False


def test_whole_checkpoints_and_a_usable_snapshot_are_left_alone(member):
    logged: list[str] = []
    make_checkpoint(member, OLD)
    make_checkpoint(member, NEW)
    write_snapshot(member, [OLD, NEW])
    assert checkpoints.repair(str(member), logged.append) == []
    assert logged == []
    assert listing(member) == [OLD, NEW, SNAPSHOT]


def test_a_member_never_started_needs_no_repair(member):
    logged: list[str] = []
    assert checkpoints.repair(str(member), logged.append) == []
    assert logged == [] and not member.exists()


def test_a_torn_checkpoint_is_removed_and_named_the_whole_ones_kept(member):
    logged: list[str] = []
    make_checkpoint(member, OLD)
    make_checkpoint(member, MID, files=("state.json",))  # the model never uploaded
    make_checkpoint(member, NEW, empty=("state.json",))  # the disk filled while writing it
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [
        f"removed the partial checkpoint {member}/{NEW}",
        f"removed the partial checkpoint {member}/{MID}",
    ]
    assert logged == removed
    assert listing(member) == [OLD]
    assert sorted(p.name for p in (member / OLD).iterdir()) == ["model.keras", "state.json"]


def test_a_snapshot_listing_a_missing_checkpoint_is_removed(member):
    logged: list[str] = []
    make_checkpoint(member, OLD)
    write_snapshot(member, [OLD, NEW])  # NEW was listed, then lost
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [f"removed {member}/{SNAPSHOT}: lists missing checkpoint {NEW}"]
    assert logged == removed
    assert listing(member) == [OLD]


def test_a_snapshot_listing_a_torn_checkpoint_goes_with_it(member):
    """The snapshot was usable until the torn folder it lists was removed."""
    logged: list[str] = []
    make_checkpoint(member, OLD)
    make_checkpoint(member, NEW, files=("model.keras",))
    write_snapshot(member, [OLD, NEW])
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [
        f"removed the partial checkpoint {member}/{NEW}",
        f"removed {member}/{SNAPSHOT}: it listed a partial checkpoint",
    ]
    assert logged == removed
    assert listing(member) == [OLD]


def test_a_snapshot_not_listing_the_torn_checkpoint_is_kept(member):
    logged: list[str] = []
    make_checkpoint(member, OLD)
    make_checkpoint(member, NEW, files=())
    write_snapshot(member, [OLD])
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [f"removed the partial checkpoint {member}/{NEW}"]
    assert logged == removed
    assert listing(member) == [OLD, SNAPSHOT]


def test_a_snapshot_of_another_ray_version_is_removed(member):
    logged: list[str] = []
    make_checkpoint(member, OLD)
    write_snapshot(member, [OLD], ray_version="2.0.0")
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [f"removed {member}/{SNAPSHOT}: written by Ray 2.0.0, not {RAY}"]
    assert logged == removed
    assert listing(member) == [OLD]


def test_a_snapshot_without_a_ray_version_is_removed(member):
    logged: list[str] = []
    make_checkpoint(member, OLD)
    (member / SNAPSHOT).write_text(json.dumps({"checkpoint_results": []}))
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [f"removed {member}/{SNAPSHOT}: written by Ray None, not {RAY}"]
    assert listing(member) == [OLD]


@pytest.mark.parametrize(
    "content, why",
    [
        ("", "JSONDecodeError"),  # a process killed before it wrote
        ('{"ray_version": ', "JSONDecodeError"),  # the disk filled while it wrote
        ("[]", "AttributeError"),
        (json.dumps({"ray_version": RAY, "checkpoint_results": [{}]}), "KeyError"),
        (json.dumps({"ray_version": RAY, "checkpoint_results": 3}), "TypeError"),
        ("[" * 100_000 + "]" * 100_000, "RecursionError"),  # not the repair's own failure
    ],
    ids=[
        "empty",
        "cut-short",
        "a-list",
        "a-result-without-its-folder",
        "results-not-a-list",
        "nested-too-deeply",
    ],
)
def test_an_unreadable_snapshot_is_removed_with_the_reason(member, content, why):
    logged: list[str] = []
    make_checkpoint(member, OLD)
    (member / SNAPSHOT).write_text(content)
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [f"removed {member}/{SNAPSHOT}: unreadable ({why})"]
    assert logged == removed
    assert listing(member) == [OLD]


def test_an_unusable_snapshot_and_a_torn_checkpoint_are_both_removed_snapshot_first(member):
    logged: list[str] = []
    make_checkpoint(member, OLD, files=("model.keras",))
    (member / SNAPSHOT).write_text("")
    removed = checkpoints.repair(str(member), logged.append)
    assert removed == [
        f"removed {member}/{SNAPSHOT}: unreadable (JSONDecodeError)",
        f"removed the partial checkpoint {member}/{OLD}",
    ]
    assert logged == removed
    assert listing(member) == []
