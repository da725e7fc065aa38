"""`committee tune --storage`: the search's experiments and trials go under the shared storage,
as a run's checkpoints do, not under the local run folder."""

from __future__ import annotations

import pytest

from committee.distributed import tuning


def test_experiment_location_defaults_to_the_run_folder(tmp_path):
    where = tuning.experiment_location(tmp_path / "search", "model1")
    assert where == str((tmp_path / "search" / "tune" / "model1").resolve())


def test_experiment_location_under_a_storage_path_and_uri(tmp_path):
    run_dir = tmp_path / "runs" / "search"
    local = tuning.experiment_location(run_dir, "model1", str(tmp_path / "shared"), "abc123")
    assert local == str((tmp_path / "shared").resolve() / "search" / "abc123" / "tune" / "model1")
    uri = tuning.experiment_location(run_dir, "model3", "s3://bucket/prefix/", "abc123")
    assert uri == "s3://bucket/prefix/search/abc123/tune/model3"
    with pytest.raises(ValueError, match="needs the run's instance id"):
        tuning.experiment_location(run_dir, "model1", "s3://bucket", None)


def test_split_location_of_a_path_and_a_uri(tmp_path):
    assert tuning._split_location("s3://b/p/tune/model1/") == (
        "s3://b/p/tune/model1",
        "s3://b/p/tune",
        "model1",
    )
    path, parent, name = tuning._split_location(tmp_path / "tune" / "model1")
    assert (path, parent, name) == (
        str(tmp_path.resolve() / "tune" / "model1"),
        str(tmp_path.resolve() / "tune"),
        "model1",
    )
