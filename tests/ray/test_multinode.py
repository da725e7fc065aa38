"""Placement on a multi-node cluster built on this machine: a head with no CPUs and two
1-CPU nodes (each a real raylet). Each of two members must get its own node, both at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import RayHead, run_cli

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    head = RayHead(tmp_path_factory.mktemp("multinode"), num_cpus=0)
    try:
        for expected in (2, 3):  # one at a time: raylets started together overload 2 cores
            head.add_node(num_cpus=1)
            deadline = time.time() + 150
            while time.time() < deadline and len(_nodes(head)) < expected:
                time.sleep(2)
            assert len(_nodes(head)) == expected, f"node {expected - 1} did not join"
        yield head
    finally:
        head.stop()


def _state(head, kind: str, *filters: str) -> list[dict]:
    args = [
        RAY,
        "list",
        kind,
        "--address",
        head.gcs_address,
        "--format",
        "json",
        "--detail",
        "--limit",
        "1000",
    ]
    for f in filters:
        args += ["--filter", f]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=head.env)
    assert proc.returncode == 0, proc.stderr
    start = proc.stdout.find("[")  # "No resource in the cluster" when the list is empty
    return json.loads(proc.stdout[start:]) if start >= 0 else []


def _nodes(head) -> list[dict]:
    return [n for n in _state(head, "nodes") if n["state"] == "ALIVE"]


def test_members_run_on_different_nodes_at_the_same_time(cluster, tmp_path):
    proc = run_cli(
        "run",
        "--address",
        cluster.gcs_address,
        "--members",
        "model1,model2",
        "--limit-train",
        "2000",
        "--epochs",
        "1",
        "--cpus-per-member",
        "1",
        "--output",
        str(tmp_path),
        "--run-name",
        "spread",
        env=cluster.env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    head_id = next(n["node_id"] for n in _nodes(cluster) if n["is_head_node"])
    workers = _state(cluster, "actors", "class_name=RayTrainWorker")
    nodes = {a["node_id"] for a in workers}
    assert len(workers) == 2 and len(nodes) == 2, workers  # from Ray's own records
    assert head_id not in nodes
    # At the same time: the two worker processes were alive together (Ray's records; the
    # members' own training spans are too short here to overlap reliably: on one epoch of 1,600
    # images the fastest can finish before the last worker has imported TensorFlow).
    pids = {a["pid"] for a in workers}
    lives = [
        (w["start_time_ms"], w["end_time_ms"])
        for w in _state(cluster, "workers")
        if w["pid"] in pids
    ]
    assert len(lives) == 2 and max(s for s, _ in lives) < min(e for _, e in lives), lives
    results = json.loads((tmp_path / "spread" / "results.json").read_text())
    assert results["run"]["placement"] == "1 CPU"


def test_request_no_node_can_hold_fails_fast(cluster, tmp_path):
    started = time.time()
    proc = run_cli(
        "run",
        "--address",
        cluster.gcs_address,
        "--limit-train",
        "2000",
        "--cpus-per-member",
        "2",
        "--output",
        str(tmp_path),
        env=cluster.env,
        timeout=300,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "asks for 2 CPU and 0 GPU on one node" in last and "largest: 1 CPU" in last
    assert time.time() - started < 120
