"""Jobs on a running head started the way a user starts one (`ray start --head`, no RAY_AUTH_*
variables, a token in its home): README's `committee submit` command as written, a job
stopped with `ray job stop`, and the resubmission that resumes it and finishes the
committee; a client without the token is refused in one line."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, RayHead, registered_checkpoints

RAY = str(Path(sys.executable).with_name("ray"))
COMMITTEE = str(Path(sys.executable).with_name("committee"))


@pytest.fixture(scope="module")
def default_head(tmp_path_factory):
    head = RayHead(tmp_path_factory.mktemp("head"), default_auth=True)
    yield head
    head.stop()


def _client_env(head, **extra) -> dict:
    """A shell on the head's machine: its home (the token in ~/.ray/auth_token), no RAY_AUTH_*
    variables, this environment's Python first on PATH (as in an activated virtualenv)."""
    env = {k: v for k, v in head.env.items() if not k.startswith("RAY_AUTH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _readme_command(head, out: Path, submission_id: str, *options: str) -> list[str]:
    """README's `committee submit` command as written, with this head's address, a folder of
    the test for /shared/runs, the data's folder for /shared/fashion-mnist, and ``options``
    (a smaller job) appended."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(\s*committee submit .*?)```", text, re.S).group(1)
    args = shlex.split(block.replace("\\\n", " "))
    swap = {
        "http://127.0.0.1:8265": head.dashboard_url,
        "seed-shared-try1": submission_id,
        "/shared/runs": str(out),
        "/shared/fashion-mnist": os.environ["FASHION_MNIST_DIR"],
    }
    assert set(swap) <= set(args), args
    return [COMMITTEE if a == "committee" else swap.get(a, a) for a in args] + list(options)


def _client(head, argv: list[str], timeout=600, **env) -> subprocess.CompletedProcess:
    """``argv`` run from this project's folder in a shell on the head's machine
    (:func:`_client_env` with ``env``)."""
    env = _client_env(head, **env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def _job_cli(head, *args, timeout=600) -> subprocess.CompletedProcess:
    return _client(
        head, [RAY, "job", *args], timeout, RAY_ADDRESS=head.dashboard_url, **_ray_cli_auth(head)
    )


def _ray_cli_auth(head) -> dict:
    """What Ray's own `ray job` commands need to send the head's token: RAY_AUTH_MODE=token
    (they find the token in ~/.ray/auth_token, but send it only in that mode)."""
    return {"RAY_AUTH_MODE": "token"} if (head.home / ".ray" / "auth_token").exists() else {}


def _committee_submit(head, *args: str, env_home: Path | None = None, timeout=600):
    home = {} if env_home is None else {"HOME": str(env_home)}
    return _client(head, [COMMITTEE, "submit", *args], timeout, **home)


def _status(head, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(
        head.dashboard_url, headers={"Authorization": f"Bearer {head.token}"}
    )
    return str(client.get_job_status(job_id).value)


def test_dashboard_listens_on_loopback_only(default_head):
    import psutil

    listeners = {
        c.laddr.ip
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == default_head.dashboard_port
    }
    assert listeners == {"127.0.0.1"}


WHICH_CLUSTER = """
import ray
ray.init(logging_level="ERROR")
print("joined", ray.get_runtime_context().gcs_address)
"""


def test_heads_started_side_by_side_each_run_their_own_jobs(default_head, tmp_path):
    # Two heads on one machine (the Ray tier runs in two processes) once shared the job agent's
    # default port, so the second refused every submission, and shared /tmp/ray, so a job's
    # driver on the first joined the second (the head `ray start` made last). The second has
    # no token: authentication off, and a client that sends one anyway is still served.
    second = RayHead(tmp_path, default_auth=True, token_file=False)
    try:
        assert second.agent_port != default_head.agent_port
        for head in (second, default_head):
            proc = _job_cli(head, "submit", "--", sys.executable, "-c", WHICH_CLUSTER)
            assert proc.returncode == 0, proc.stderr[-2000:]
            joined = re.search(r"joined \S+:(\d+)", proc.stdout)
            assert joined and int(joined.group(1)) == head.port, proc.stdout[-2000:]
    finally:
        second.stop()


def test_a_client_without_the_token_is_told_the_fix_in_one_line(default_head, tmp_path):
    out = tmp_path / "runs"
    args = _readme_command(default_head, out, "no-token-try1")[2:]  # after `committee submit`
    proc = _committee_submit(default_head, *args, env_home=tmp_path)  # no ~/.ray/auth_token
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"committee: error: the Ray cluster at {default_head.dashboard_url} requires token "
        "authentication and no token was found here: copy the head's ~/.ray/auth_token to "
        "~/.ray/auth_token here, or set RAY_AUTH_TOKEN=<token> (or RAY_AUTH_TOKEN_PATH=<file>)"
    ], proc.stderr
    # and a bad run option is one line before anything is sent
    proc = _committee_submit(default_head, "--", "--epochs", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "committee submit: error: argument --epochs: 0 must be an integer in 1..100000"
    )
    assert not out.exists()


def test_stopped_job_leaves_no_half_written_outputs_and_resumes(default_head, tmp_path):
    run_dir = tmp_path / "seed-shared"
    # model1 finishes after one epoch, model3 (128 filters at 14x14, over twice as long per
    # epoch) has three or more to go: the job is stopped in between, whatever the machine's load
    config = tmp_path / "epochs.json"
    config.write_text(json.dumps({"model1": {"epochs": 1}, "model3": {"epochs": 4}}))
    small = ("--members", "model1,model3", "--limit-train", "12000", "--config", str(config))
    first = _readme_command(default_head, tmp_path, "stopped-try1", *small)
    proc = _client(default_head, [*first[:2], "--no-wait", *first[2:]], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted job stopped-try1" in proc.stderr, proc.stderr[-3000:]
    job_id = "stopped-try1"
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
        logs = _job_cli(default_head, "logs", job_id).stdout
        pytest.fail(f"the job never reached the point to stop it; its log ends:\n{logs[-3000:]}")
    stop = _job_cli(default_head, "stop", job_id)
    assert stop.returncode == 0, stop.stderr
    stopped_at = registered_checkpoints(run_dir / "train" / "model3")
    deadline = time.time() + 120
    while time.time() < deadline and _status(default_head, job_id) != "STOPPED":
        time.sleep(1)
    assert _status(default_head, job_id) == "STOPPED"
    logs = _job_cli(default_head, "logs", job_id).stdout
    assert "interrupted; finished members and checkpoints are kept" in logs  # SIGTERM handled
    assert (run_dir / "INCOMPLETE").exists()
    assert not (run_dir / "results.json").exists()
    assert not list(run_dir.rglob(".*.tmp")), "temporary files left behind"

    # README's command as written (the next submission id) resumes it to the committee.
    again = _client(default_head, _readme_command(default_head, tmp_path, "stopped-try2", *small))
    logs = again.stdout + again.stderr
    assert again.returncode == 0, logs[-3000:]
    assert "job stopped-try2 succeeded" in again.stderr
    assert _status(default_head, "stopped-try2") == "SUCCEEDED"  # Ray's own record
    for line in ("member model1", "member model3", "committee mean"):
        assert line in again.stdout
    assert (run_dir / "predictions.parquet").is_file()
    assert "model1: finished in an earlier run of this folder, reusing it" in logs
    results = json.loads((run_dir / "results.json").read_text())
    assert results["training"]["model1"]["reused"] is True
    model3 = results["training"]["model3"]
    assert model3["reused"] is False, (
        f"model3 finished in the stopped job: it had {ckpt2} checkpoints when model1 was "
        f"done, {stopped_at} when the stop returned"
    )
    assert model3["resumed_at"] and model3["resumed_at"][0] >= 1  # from its checkpoint
    assert model3["epochs_run"] == len(model3["history"]["loss"])
    assert model3["epochs_run"] == 4 or model3["stopped_early"]
    assert not (run_dir / "INCOMPLETE").exists()
