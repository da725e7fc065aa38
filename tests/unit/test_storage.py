"""Where a run keeps what Ray writes (committee.rundir.storage): the run folder by default,
else under --storage by run name and instance, a search's experiments beside the checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from committee.rundir import storage


def test_experiment_location_defaults_to_the_run_folder(tmp_path):
    where = storage.experiment_location(tmp_path / "search", "model1")
    assert where == str((tmp_path / "search" / "tune" / "model1").resolve())


def test_experiment_location_under_a_storage_path_and_uri(tmp_path):
    run_dir = tmp_path / "runs" / "search"
    local = storage.experiment_location(run_dir, "model1", str(tmp_path / "shared"), "abc123")
    assert local == str((tmp_path / "shared").resolve() / "search" / "abc123" / "tune" / "model1")
    uri = storage.experiment_location(run_dir, "model3", "s3://bucket/prefix/", "abc123")
    assert uri == "s3://bucket/prefix/search/abc123/tune/model3"
    with pytest.raises(ValueError, match="needs the run's instance id"):
        storage.experiment_location(run_dir, "model1", "s3://bucket", None)


def test_split_location_of_a_path_and_a_uri(tmp_path):
    assert storage.split_location("s3://b/p/tune/model1/") == (
        "s3://b/p/tune/model1",
        "s3://b/p/tune",
        "model1",
    )
    path, parent, name = storage.split_location(tmp_path / "tune" / "model1")
    assert (path, parent, name) == (
        str(tmp_path.resolve() / "tune" / "model1"),
        str(tmp_path.resolve() / "tune"),
        "model1",
    )


def test_a_runs_train_storage_is_in_its_folder_or_under_storage_by_instance(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    assert storage.storage_for(run_dir, None, "abc") == str((run_dir / "train").resolve())
    assert storage.storage_for(run_dir, str(tmp_path / "shared"), "abc") == str(
        (tmp_path / "shared" / "r1" / "abc").resolve()
    )
    assert storage.storage_for(run_dir, "s3://bucket/prefix/", "abc") == "s3://bucket/prefix/r1/abc"
    assert storage.storage_for(run_dir, "~/x", "abc").startswith(str(Path.home()))


def test_a_uri_is_told_from_a_path_in_one_place():
    assert storage.is_uri("s3://b/p") and storage.is_uri("file:///tmp/x")
    assert not storage.is_uri("/tmp/x") and not storage.is_uri("relative/path")
    fs, path = storage.filesystem("/tmp/x")
    assert type(fs).__name__ == "LocalFileSystem" and path == "/tmp/x"
