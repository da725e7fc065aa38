"""Faults on a real Ray cluster: a training worker killed with SIGKILL mid-run, a driver
interrupted with SIGTERM, a request no node can satisfy, an unreachable address."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, run_cli
from helpers import registered_checkpoints as _registered_checkpoints

RAY = str(Path(sys.executable).with_name("ray"))


def _cli_popen(*args, env):
    return subprocess.Popen(
        [sys.executable, "-m", "committee", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group, as a shell's job
    )


def _wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _alive_train_worker_pids(head) -> list[int]:
    """PIDs of alive Ray Train workers, from Ray's own state API."""
    proc = subprocess.run(
        [
            RAY,
            "list",
            "actors",
            "--address",
            head.gcs_address,
            "--filter",
            "class_name=RayTrainWorker",
            "--filter",
            "state=ALIVE",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=head.env,
    )
    start = proc.stdout.find("[")
    if proc.returncode != 0 or start < 0:
        return []
    return [int(a["pid"]) for a in json.loads(proc.stdout[start:]) if a.get("pid")]


def test_killed_worker_resumes_from_its_checkpoint(ray_head, tmp_path):
    run_dir = tmp_path / "killed"
    proc = _cli_popen(
        "--address",
        ray_head.gcs_address,
        "--members",
        "model3",
        "--epochs",
        "4",
        "--limit-train",
        "4000",
        "--output",
        str(tmp_path),
        "--run-name",
        "killed",
        "--max-failures",
        "2",
        env=ray_head.env,
    )
    pids = _wait_for(lambda: _alive_train_worker_pids(ray_head), 300, "the worker's pid", proc)
    assert len(pids) == 1
    _wait_for(
        lambda: _registered_checkpoints(run_dir / "train" / "model3"),
        300,
        "the first registered checkpoint",
        proc,
    )
    os.kill(pids[0], signal.SIGKILL)
    killed_at = time.time()
    out, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, out[-4000:]
    results = json.loads((run_dir / "results.json").read_text())
    training = results["training"]["model3"]
    assert training["resumed_at"] and training["resumed_at"][0] >= 1, out[-6000:]
    assert training["resumed_at"][0] < 4  # killed part way, continued from the checkpoint
    assert training["epochs_run"] == 4 and len(training["history"]["loss"]) == 4
    assert results["committee"]["mean"]["accuracy"] > 0
    print(
        f"killed after epoch >= 1; resumed at epochs {training['resumed_at']}; "
        f"{time.time() - killed_at:.0f} s from kill to finished run"
    )


def test_sigterm_to_the_commands_process_group_then_rerun_resumes(tmp_path):
    run_dir = tmp_path / "interrupted"
    args = ("--backend", "jax", "--members", "model2", "--epochs", "3", "--limit-train", "2000")
    args += ("--output", str(tmp_path), "--run-name", "interrupted")
    proc = _cli_popen(*args, env={**os.environ})
    _wait_for(
        lambda: _registered_checkpoints(run_dir / "train" / "model2"),
        300,
        "the first registered checkpoint",
        proc,
    )
    os.killpg(proc.pid, signal.SIGTERM)  # as `kill %1` does: the whole job, Ray's not in it
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]  # 128 + SIGTERM
    assert "rerun with the same --run-name to resume" in out
    assert (run_dir / "INCOMPLETE").exists() and not (run_dir / "results.json").exists()
    assert not list(run_dir.rglob(".*.tmp"))

    again = run_cli("run", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    training = json.loads((run_dir / "results.json").read_text())["training"]["model2"]
    assert training["resumed_at"] and training["resumed_at"][0] >= 1
    assert training["epochs_run"] == 3 and len(training["history"]["loss"]) == 3


def test_impossible_gpu_request_fails_fast(tmp_path):
    started = time.time()
    proc = run_cli(
        "run",
        "--limit-train",
        "2000",
        "--epochs",
        "1",
        "--gpus-per-member",
        "1",
        "--output",
        str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert "asks for" in err and "1 GPU" in err and "0 GPU" in err
    assert time.time() - started < 240
    assert not any(tmp_path.iterdir())  # no run folder


def test_unreachable_address_fails_within_bounded_time(tmp_path):
    from helpers import free_port

    started = time.time()
    proc = run_cli(
        "run",
        "--epochs",
        "1",
        "--address",
        f"127.0.0.1:{free_port()}",
        "--output",
        str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "could not connect to the Ray cluster" in proc.stderr.strip().splitlines()[-1]
    assert time.time() - started < 120
