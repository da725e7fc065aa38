"""`committee tune --storage`: the search's experiments and trials go under the shared storage,
as a run's checkpoints do, not under the local run folder."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli


@pytest.mark.ray
def test_tune_writes_trials_under_storage(tmp_path):
    storage = tmp_path / "shared"
    proc = run_cli(
        "tune",
        "--members",
        "model1",
        "--num-samples",
        "1",
        "--epochs",
        "1",
        "--limit-train",
        "300",
        "--scheduler",
        "fifo",
        "--output",
        str(tmp_path / "runs"),
        "--run-name",
        "search",
        "--storage",
        str(storage),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = tmp_path / "runs" / "search"
    instance = json.loads((run_dir / "config.json").read_text())["instance"]
    experiment = storage / "search" / instance / "tune" / "model1"
    assert any((experiment / "trials").iterdir()), "no trial under the storage"
    assert not (run_dir / "tune").exists()
    assert (run_dir / "results.json").is_file()
