"""`ray job submit` against a real head on 127.0.0.1 (token auth on), `ray job stop`, and a
resubmission that resumes the stopped run and finishes the committee."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, registered_checkpoints

RAY = str(Path(sys.executable).with_name("ray"))


def _job_cli(head, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY, "job", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**head.env, "RAY_ADDRESS": head.dashboard_url},
    )


def _submit(head, out: Path, run_name: str, *extra: str, wait: bool = True):
    runtime_env = {
        "working_dir": str(ROOT),
        "excludes": [".venv", ".git", "runs", "data"],
        "env_vars": {
            "FASHION_MNIST_DIR": os.environ["FASHION_MNIST_DIR"],
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
    }
    args = ["submit", "--runtime-env-json", json.dumps(runtime_env)]
    if not wait:
        args.append("--no-wait")
    args += [
        "--",
        sys.executable,
        "jobs/train_committee.py",
        "--output",
        str(out),
        "--run-name",
        run_name,
        *extra,
    ]
    # RayHead waits for its job agent to listen, but the agent registers with the head a moment
    # later; until then a submission is refused with "No available agent ... try again later".
    for _ in range(12):
        proc = _job_cli(head, *args)
        if "No available agent to submit job" not in proc.stderr:
            return proc
        time.sleep(5)
    return proc


def _job_id(logs: str) -> str:
    return re.search(r"raysubmit_[A-Za-z0-9]+", logs).group(0)


def _status(head, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(
        head.dashboard_url, headers={"Authorization": f"Bearer {head.token}"}
    )
    return str(client.get_job_status(job_id).value)


def test_dashboard_listens_on_loopback_only(ray_head):
    import psutil

    listeners = {
        c.laddr.ip
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == ray_head.dashboard_port
    }
    assert listeners == {"127.0.0.1"}


WHICH_CLUSTER = """
import ray
ray.init(logging_level="ERROR")
print("joined", ray.get_runtime_context().gcs_address)
"""


def test_heads_started_side_by_side_each_run_their_own_jobs(ray_head, tmp_path):
    # Two heads on one machine (the Ray tier runs in two processes) once shared the job agent's
    # default port, so the second refused every submission, and shared /tmp/ray, so a job's
    # driver on the first joined the second (the head `ray start` made last).
    from helpers import RayHead

    second = RayHead(tmp_path)
    try:
        assert second.agent_port != ray_head.agent_port
        for head in (second, ray_head):
            proc = _job_cli(head, "submit", "--", sys.executable, "-c", WHICH_CLUSTER)
            assert proc.returncode == 0, proc.stderr[-2000:]
            joined = re.search(r"joined \S+:(\d+)", proc.stdout)
            assert joined and int(joined.group(1)) == head.port, proc.stdout[-2000:]
    finally:
        second.stop()


def test_job_submit_without_token_is_refused(ray_head, tmp_path):
    env = {k: v for k, v in ray_head.env.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    proc = subprocess.run(
        [RAY, "job", "list", "--address", ray_head.dashboard_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode != 0
    assert "401" in proc.stdout + proc.stderr or "auth" in (proc.stdout + proc.stderr).lower()


def test_stopped_job_leaves_no_half_written_outputs_and_resumes(ray_head, tmp_path):
    run_dir = tmp_path / "stopped"
    # model3 (128 filters at 14x14) takes over twice as long per epoch as model1
    args = ("stopped", "--members", "model1,model3", "--epochs", "4", "--limit-train", "12000")
    proc = _submit(ray_head, tmp_path, *args, wait=False)
    assert proc.returncode == 0, proc.stderr
    job_id = _job_id(proc.stdout + proc.stderr)
    # Stop once model1 has finished and model3 has checkpointed but not finished.
    deadline = time.time() + 420
    while time.time() < deadline:
        done1 = (run_dir / "members" / "model1.json").is_file()
        ckpt2 = registered_checkpoints(run_dir / "train" / "model3")
        done2 = (run_dir / "members" / "model3.json").is_file()
        if done2:
            pytest.fail("model3 finished before the job could be stopped part way")
        if done1 and ckpt2:
            break
        time.sleep(0.2)
    else:
        logs = _job_cli(ray_head, "logs", job_id).stdout
        pytest.fail(f"the job never reached the point to stop it; its log ends:\n{logs[-3000:]}")
    stop = _job_cli(ray_head, "stop", job_id)
    assert stop.returncode == 0, stop.stderr
    deadline = time.time() + 120
    while time.time() < deadline and _status(ray_head, job_id) != "STOPPED":
        time.sleep(1)
    assert _status(ray_head, job_id) == "STOPPED"
    logs = _job_cli(ray_head, "logs", job_id).stdout
    assert "interrupted; finished members and checkpoints are kept" in logs  # SIGTERM handled
    assert (run_dir / "INCOMPLETE").exists()
    assert not (run_dir / "results.json").exists()
    assert not list(run_dir.rglob(".*.tmp")), "temporary files left behind"

    # The resubmission is also the plain case: a job that runs the committee to its end.
    again = _submit(ray_head, tmp_path, *args)
    logs = again.stdout + again.stderr
    assert again.returncode == 0, logs[-3000:]
    assert "succeeded" in logs.lower()
    assert _status(ray_head, _job_id(logs)) == "SUCCEEDED"  # Ray's own record
    for line in ("member model1", "member model3", "committee mean"):
        assert line in logs
    assert (run_dir / "predictions.parquet").is_file()
    assert "model1: finished in an earlier run of this folder, reusing it" in logs
    results = json.loads((run_dir / "results.json").read_text())
    assert results["training"]["model1"]["reused"] is True
    model2 = results["training"]["model3"]
    assert model2["reused"] is False
    assert model2["resumed_at"] and model2["resumed_at"][0] >= 1  # from its checkpoint
    assert model2["epochs_run"] == len(model2["history"]["loss"])
    assert model2["epochs_run"] == 4 or model2["stopped_early"]
    assert not (run_dir / "INCOMPLETE").exists()
