"""Run folders never lie and never lose work (real local Ray runs of small slices).

One finished two-member run is made per module; each test works on a copy of it: a rerun with
other settings is refused before anything changes, damaged state is repaired on resumption,
--overwrite keeps the finished run when the new one fails, one writer per folder, a diverged
member is never saved, a full disk is one line and a rerun finishes, a Tune budget too short
is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, run_cli

# JAX workers start faster than TensorFlow's; what these tests check does not depend on the
# backend (the TensorFlow path is run by test_job_submit, test_faults, test_multinode).
ARGS = ("--backend", "jax", "--members", "model1,model2", "--epochs", "2", "--limit-train", "600")


def _run(output: Path, name: str, *extra: str, timeout: float = 600):
    return run_cli(
        "run", *ARGS, "--output", str(output), "--run-name", name, *extra, timeout=timeout
    )


def _last_line(proc) -> str:
    """The command's one error line (Ray's workers may still log after it, at exit)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("committee: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: equal listings, nothing changed."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _unfinish(run_dir: Path) -> None:
    """Make a finished run look interrupted after its members finished."""
    for name in ("results.json", "report.md", "predictions.parquet"):
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "figures")
    (run_dir / "INCOMPLETE").write_text("")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run; while it trained, a second run of the same folder was refused."""
    output = tmp_path_factory.mktemp("finished")
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "committee",
            "run",
            *ARGS,
            "--output",
            str(output),
            "--run-name",
            "base",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    deadline = time.time() + 120
    while not (output / "base" / "config.json").exists():  # written under the lock
        assert first.poll() is None and time.time() < deadline, first.stdout.read()[-3000:]
        time.sleep(0.2)
    started = time.time()
    second = _run(output, "base")
    assert second.returncode == 2, second.stderr[-2000:]
    assert _last_line(second) == (
        f"committee: error: run folder {output / 'base'} is in use "
        f"by another run (process {first.pid}); wait for it to end "
        f"or choose another --run-name"
    )
    assert time.time() - started < 30  # refused at once, not after training
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-4000:]
    assert not (output / ".base.lock").exists()  # released
    return output / "base"


def _copy(finished: Path, tmp_path: Path, name: str = "base") -> Path:
    target = tmp_path / name
    shutil.copytree(finished, target)
    return target


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (root only): room for one checkpoint of model1, not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_rerun_with_other_settings_is_refused_before_anything_changes(finished, tmp_path, capsys):
    """In this process (the refusal comes before data and Ray: no interpreter to start)."""
    from committee.app import cli

    run_dir = _copy(finished, tmp_path)
    _unfinish(run_dir)
    before = _listing(run_dir)
    for extra, words in [
        (
            ("--split", "stratified", "--seed", "3"),
            "(data.split: tail -> stratified; seed: 0 -> "
            "3; model1.seed: 0 -> 3; model2.seed: 1 -> 4)",
        ),
        (
            ("--learning-rate", "0.5"),
            "model1.learning_rate: 0.001 -> 0.5; model2.learning_rate: 0.01 -> 0.5",
        ),
        (("--limit-train", "2000"), "(data.limit_train: 600 -> 2000)"),
        (("--members", "model1"), "(members: model1,model2 -> model1)"),
    ]:
        started = time.time()
        status = cli.main(["run", *ARGS, "--output", str(tmp_path), "--run-name", "base", *extra])
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1, err
        assert "holds an unfinished run with other settings" in err and words in err, err
        assert time.time() - started < 30  # before data and Ray
        assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
        assert _listing(run_dir) == before
    results = json.loads((finished / "results.json").read_text())
    assert {n: t["seed"] for n, t in results["training"].items()} == {"model1": 0, "model2": 1}


def test_resumption_survives_damaged_state(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    _unfinish(run_dir)
    # model1: its saved files gone and its newest checkpoint torn -> the older checkpoint
    for path in (
        run_dir / "members" / "model1.npz",
        run_dir / "members" / "model1.json",
        run_dir / "models" / "model1.keras",
    ):
        path.unlink()
    newest = sorted((run_dir / "train" / "model1").glob("checkpoint_2*"))[-1] / "model.keras"
    os.truncate(newest, 20_000)
    # model2: its probabilities damaged, its newest checkpoint's state torn, its checkpoint
    # snapshot emptied, a partial checkpoint
    os.truncate(run_dir / "members" / "model2.npz", 1000)
    torn = sorted((run_dir / "train" / "model2").glob("checkpoint_2*"))[-1] / "state.json"
    torn.write_text('{"epoch": 2')
    (run_dir / "train" / "model2" / "checkpoint_manager_snapshot.json").write_text("")
    partial = run_dir / "train" / "model2" / "checkpoint_2000-01-01_00-00-00.000000"
    partial.mkdir()
    (partial / "state.json").write_text("{}")

    proc = _run(tmp_path, "base")
    assert proc.returncode == 0, proc.stderr[-4000:]
    said = proc.stdout + proc.stderr  # the workers' lines reach the driver's stdout
    assert f"checkpoint {newest.parent}/model.keras could not be loaded" in said
    assert "model2: its saved files are damaged (BadZipFile" in said
    assert f"checkpoint {torn} could not be loaded (JSONDecodeError" in said  # not model.keras
    assert "checkpoint_manager_snapshot.json: unreadable" in said
    assert f"removed the partial checkpoint {partial}" in said and not partial.exists()

    results = json.loads((run_dir / "results.json").read_text())
    for name in ("model1", "model2"):  # each from its older checkpoint
        assert results["training"][name]["resumed_at"] == [1], name
    assert results["training"]["model1"]["epochs_run"] == 2
    probs = {n: np.load(run_dir / "members" / f"{n}.npz")["test"] for n in ("model1", "model2")}
    mean = (probs["model1"] + probs["model2"]) / 2  # the figures recompute from saved outputs
    labels = pq.read_table(run_dir / "predictions.parquet")["label"].to_numpy()
    assert results["committee"]["mean"]["accuracy"] == pytest.approx(
        float((mean.argmax(axis=1) == labels).mean()), abs=1e-12
    )


def test_overwrite_keeps_the_finished_run_when_the_new_one_fails(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    before = _listing(run_dir)
    # bad input is refused before anything is touched
    proc = _run(tmp_path, "base", "--overwrite", "--storage", "ftp://nowhere/x")
    assert (
        proc.returncode == 2
        and "--storage 'ftp://nowhere/x': scheme ftp:// is not supported" in _last_line(proc)
    ), proc.stderr[-2000:]
    assert _listing(run_dir) == before
    # a new run that fails part way (its members diverge) puts the finished run back
    # (one member is enough to fail it; an overwrite may change the settings)
    proc = _run(
        tmp_path,
        "base",
        "--overwrite",
        "--learning-rate",
        "1e30",
        "--epochs",
        "1",
        "--members",
        "model1",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _last_line(proc)
    assert (
        "diverged in epoch 1 at learning rate 1e+30 (loss nan); it was stopped and not saved"
        in line
        and line.startswith("committee: error: member model")
    ), line
    assert "--overwrite did not finish" in proc.stderr
    assert _listing(run_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # nothing set aside, no lock
    # a folder this tool did not make is never overwritten
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "config.json").write_text('{"learning_rate": 0.1}')
    (proj / "precious.txt").write_text("keep")
    proc = _run(tmp_path, "proj", "--overwrite")
    assert proc.returncode == 2 and "without this tool's config.json" in _last_line(proc)
    assert (proj / "precious.txt").read_text() == "keep"


def test_a_diverged_member_is_never_saved(tmp_path):
    # (That its unfinished folder can then be overwritten is runfolder's, tested without Ray.)
    args = ("--backend", "jax", "--members", "model1", "--epochs", "1", "--limit-train", "600")
    args += ("--output", str(tmp_path), "--run-name", "nan")
    proc = run_cli("run", *args, "--learning-rate", "1e30")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert _last_line(proc).startswith(
        "committee: error: member model1 diverged in epoch 1 at learning rate 1e+30"
    )
    run_dir = tmp_path / "nan"
    assert (run_dir / "INCOMPLETE").exists()
    assert not (run_dir / "members" / "model1.json").exists()
    assert not (run_dir / "models" / "model1.keras").exists()


def test_a_full_disk_is_one_line_and_a_rerun_with_space_finishes(small_disk):
    args = (
        "--backend",
        "jax",
        "--members",
        "model1",
        "--epochs",
        "3",
        "--limit-train",
        "600",
        "--max-failures",
        "0",
        "--output",
        str(small_disk),
        "--run-name",
        "full",
    )
    proc = run_cli("run", *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _last_line(proc)
    assert line.startswith(f"committee: error: no space left on device writing {small_disk}")
    assert "rerun with the same --run-name to resume" in line
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    proc = run_cli("run", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    training = json.loads((small_disk / "full" / "results.json").read_text())["training"]
    assert training["model1"]["epochs_run"] == 3 and training["model1"]["resumed_at"]


def test_a_tune_budget_too_short_is_one_line_and_a_changed_rerun_is_refused(tmp_path):
    args = (
        "--backend",
        "jax",
        "--members",
        "model1",
        "--num-samples",
        "2",
        "--epochs",
        "1",
        "--limit-train",
        "1000",
        "--scheduler",
        "fifo",
        "--output",
        str(tmp_path),
        "--run-name",
        "t",
    )
    proc = run_cli("tune", *args, "--time-budget-s", "2")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert _last_line(proc) == (
        "committee: error: no trial of model1 finished an epoch within --time-budget-s 2; "
        "expected a budget of at least one epoch plus start-up (tens of seconds to minutes): "
        "raise --time-budget-s and rerun with --overwrite"
    )
    proc = run_cli("tune", *args, "--time-budget-s", "600")
    assert proc.returncode == 2
    assert "(search.time_budget_s: 2 -> 600)" in _last_line(proc)
