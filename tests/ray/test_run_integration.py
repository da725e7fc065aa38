"""A full `committee run` on a slice of the real data, on a real local Ray cluster."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import run_cli
from sklearn.metrics import accuracy_score

MEMBERS = ("model1", "model2", "model3")


@pytest.fixture(scope="module")
def finished_run(shared_run):
    """``(run_dir, proc, seconds)`` of conftest.shared_run (the seed's three members, each
    planning 1 of 2 epochs under a time budget)."""
    return shared_run


def test_every_output_exists_and_parses(finished_run):
    run_dir, proc, _ = finished_run
    assert not (run_dir / "INCOMPLETE").exists()
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["members"]) == set(MEMBERS)
    assert set(results["committee"]) == {"mean", "geometric", "weighted"}
    assert results["data"]["n_train"] == 1600 and results["data"]["n_val"] == 400
    assert results["data"]["n_test"] == 10_000
    assert results["versions"]["ray"].startswith("2.") and results["versions"]["keras"][0] == "3"
    assert set(results["data"]["sha256"]) == {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    }
    # The manifest: the code's commit (this checkout), the machine, each member's precision.
    assert len(results["code"]["git_commit"]) == 40
    assert isinstance(results["code"]["git_dirty"], bool)
    assert results["machine"]["cpu"] and results["machine"]["platform"]
    for name in MEMBERS:
        training = results["training"][name]
        assert training["precision"] == "float32"  # the seed's members ask for float32
        assert training["device"]["cpu"] and isinstance(training["device"]["gpus"], list)
        assert training["epochs_run"] == 1 and training["epochs_planned"] == 1
        assert not training["stopped_early"]
        assert set(training["history"]) >= {
            "loss",
            "accuracy",
            "precision",
            "recall",
            "val_loss",
            "val_accuracy",
            "val_precision",
            "val_recall",
        }
        assert set(results["classification_report"][name]) >= {"accuracy", "macro avg"}
        assert np.array(results["confusion_matrix"][name]).sum() == 10_000
        assert (run_dir / "models" / f"{name}.keras").stat().st_size > 10_000
        assert f"member {name}" in proc.stdout
    report = (run_dir / "report.md").read_text()
    assert "committee (mean)" in report and "model3" in report
    assert "| model1 | 1 of 2 (time budget) |" in report
    # the test set's noise, recomputed from predictions.parquet: intervals, McNemar, per class
    assert "| 95% interval (Wilson) |" in report and "McNemar's exact test" in report
    assert "within the noise" in report or "beyond the noise" in report
    assert "## Per-class test accuracy" in report and "| Ankle boot |" in report
    log = proc.stdout + proc.stderr
    # The workers' plan lines; Ray folds lines alike but for their digits ("model1", "model3")
    # into one, so the driver's own line is the one every member is sure to get.
    assert "time budget 0.0 min: 1 epoch in" in log
    for name in MEMBERS:
        assert log.count(f"[{name}] time budget") <= 1, log  # Ray Train's print said it twice
        assert f"[committee] {name}: done after 1 epoch (time budget: 1 of 2 planned)" in log
    pngs = list((run_dir / "figures").glob("*.png"))
    assert {p.name for p in pngs} == {
        "curves_model1.png",
        "curves_model2.png",
        "curves_model3.png",
        "confusion_matrices.png",
        "class_distribution.png",
        "samples.png",
        "diversity.png",
        "reliability.png",
    }
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_trainers_overlapped_in_time(finished_run):
    results = json.loads((finished_run[0] / "results.json").read_text())
    spans = [(t["started_at"], t["finished_at"]) for t in results["training"].values()]
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans


def test_committee_accuracy_recomputed_from_predictions(finished_run):
    run_dir = finished_run[0]
    results = json.loads((run_dir / "results.json").read_text())
    table = pq.read_table(run_dir / "predictions.parquet")
    assert table.num_rows == 10_000
    labels = table["label"].to_numpy()
    members = [np.stack(table[f"{m}_proba"].to_numpy(zero_copy_only=False)) for m in MEMBERS]
    committee = np.mean(members, axis=0)
    assert accuracy_score(labels, committee.argmax(1)) == pytest.approx(
        results["committee"]["mean"]["accuracy"], abs=1e-12
    )
    for name, proba in zip(MEMBERS, members):
        assert accuracy_score(labels, proba.argmax(1)) == pytest.approx(
            results["members"][name]["accuracy"], abs=1e-12
        )


def test_report_rerenders_from_saved_outputs(finished_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)  # the shared run stays as it was written
    (run_dir / "report.md").unlink()
    for png in (run_dir / "figures").glob("*.png"):
        png.unlink()
    proc = run_cli("report", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "report.md").is_file() and len(list((run_dir / "figures").glob("*.png"))) == 8


def test_a_finished_run_is_not_overwritten(finished_run):
    run_dir = finished_run[0]
    before = (run_dir / "results.json").read_bytes()
    proc = run_cli(
        "run",
        "--limit-train",
        "2000",
        "--epochs",
        "1",
        "--output",
        str(run_dir.parent),
        "--run-name",
        run_dir.name,
    )
    assert proc.returncode == 2
    assert "already holds a complete run; pass --overwrite" in proc.stderr
    assert (run_dir / "results.json").read_bytes() == before


def test_the_terminal_shows_the_run_not_the_machinery(finished_run):
    """Redirected to a file: plain lines, no ANSI codes, no TensorFlow/CUDA/Ray-internal
    lines; each member's lines in logs/<member>.log; TensorBoard event files per member."""
    run_dir, proc, _ = finished_run
    out = proc.stdout + proc.stderr
    assert len(out.strip().splitlines()) < 40, out
    for noise in (
        "\x1b[",
        "I0000",
        "E0000",
        "cuInit",
        "oneDNN",
        "(RayTrainWorker",
        "TrainingReport(",
        "(raylet)",
        "core_worker.cc",
    ):
        assert noise not in out, (noise, out)
    for name in MEMBERS:
        assert f"[{name}] epoch 1/1: accuracy " in out  # one plain line per member per epoch
        log = (run_dir / "logs" / f"{name}.log").read_text()
        assert f"[{name}] epoch 1/1: accuracy " in log and "time budget" in log
        events = list((run_dir / "tensorboard" / name).rglob("events.out.tfevents.*"))
        assert events and all(e.stat().st_size > 0 for e in events)
