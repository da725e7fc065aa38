"""Helpers the tiers share: the data's place, damaging a data file, the CLI in a fresh
interpreter, a real Ray head started (and stopped) by its process id, a guard against
waiting on a FIFO."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from committee.distributed.cluster import free_port

ROOT = Path(__file__).resolve().parents[1]


SHARED_DATA = (ROOT.parent / "shared" / "data" / "fashion-mnist").resolve()


def corrupt(folder: Path, key: str, how: str) -> Path:
    """Damage one of the four files in ``folder`` in a named way; return its path."""
    import gzip
    import struct

    from committee.data.fashion_mnist import FILES

    path = folder / FILES[key].name
    gz = path.read_bytes()
    if how == "delete":
        path.unlink()
        return path
    if how == "truncate":
        path.write_bytes(gz[: len(gz) // 2])
        return path
    if how == "not-gzip":
        path.write_bytes(b"this is not a gzip file at all")
        return path
    if how == "wrong-count":  # the test labels in place of the train labels
        path.write_bytes((folder / FILES["test_labels"].name).read_bytes())
        return path
    raw = bytearray(gzip.decompress(gz))
    if how == "flip-pixel":  # valid gzip and IDX, different content -> checksum mismatch
        raw[-1] ^= 0xFF
    elif how == "magic":
        raw[:4] = struct.pack(">I", 2050)
    elif how == "image-size":
        raw[8:16] = struct.pack(">II", 32, 32)
    elif how == "label-range":
        raw[-1] = 12
    else:
        raise ValueError(how)
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    return path


def registered_checkpoints(storage: Path) -> int:
    """Checkpoints Ray Train has registered (its own snapshot file), not merely uploaded."""
    try:
        snapshot = json.loads((storage / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(snapshot.get("checkpoint_results", []))


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 600, module: str = "committee"
) -> subprocess.CompletedProcess:
    """Run the command line in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


SMALL_RUN_MEMBERS = ("model1", "model2", "model3")  # conftest.shared_run: the seed preset


class RayHead:
    """`ray start --head --block` in a subprocess, dashboard on 127.0.0.1, token auth on.

    ``default_auth``: started as a user would, with no ``RAY_AUTH_*`` variables and its own
    home (``self.home``): Ray then turns token authentication on when ``~/.ray/auth_token``
    exists (written unless ``token_file`` is False; else authentication is off).
    Stopped by terminating the process this object started (never `ray stop`).
    """

    def __init__(
        self,
        tmp: Path,
        num_cpus: int = 2,
        resources: str | None = None,
        default_auth: bool = False,
        token_file: bool = True,
    ):
        import secrets

        # ephemeral range: outside Ray's 10002-19999 workers
        self.port, self.dashboard_port, self.client_port = _distinct_ports(3)
        self.token = secrets.token_hex(32)
        # On SIGTERM a node drains for up to 30 s while anything runs on it; a test's
        # head (and each node added) stops at once instead.
        self.env = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        if default_auth:
            self.home = Path(tempfile.mkdtemp(prefix="home", dir=tmp))
            for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
                self.env.pop(name, None)
            self.env["HOME"] = str(self.home)
            # as from an activated virtualenv: a job's `python` is this environment's
            path = self.env.get("PATH", "")
            self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"
            if token_file:
                (self.home / ".ray").mkdir()
                (self.home / ".ray" / "auth_token").write_text(self.token)
                (self.home / ".ray" / "auth_token").chmod(0o600)
        else:
            self.env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.log = open(tmp / "ray-head.log", "w")
        # Its own session folder: a job's driver finds its cluster through the head's
        # ray_current_cluster file ("auto"), which in the shared /tmp/ray names whichever head
        # `ray start` made last on this machine (tests run in two processes). Short, because
        # Ray's socket paths under it are limited to 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            f"--port={self.port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={self.client_port}",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=true",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.temp_dir}",
        ]
        agent_ports = _agent_ports(taken=(self.port, self.dashboard_port, self.client_port))
        self.agent_port = agent_ports["dashboard-agent-listen-port"]
        cmd += [f"--{name}={port}" for name, port in agent_ports.items()]
        if resources:
            cmd.append(f"--resources={resources}")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.gcs_address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        import http.client
        import socket
        import time
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                req = urllib.request.Request(
                    f"{self.dashboard_url}/api/version",
                    headers={"Authorization": f"Bearer {self.token}"},
                )
                with urllib.request.urlopen(req, timeout=2):
                    pass
                # Jobs are handed to the node's dashboard agent: until it listens, `ray job
                # submit` is refused with "No available agent".
                socket.create_connection(("127.0.0.1", self.agent_port), timeout=2).close()
                return
            except (OSError, http.client.HTTPException):  # not up yet, or not its port yet
                time.sleep(1)
        raise TimeoutError(
            f"Ray head (dashboard :{self.dashboard_port}, job agent :{self.agent_port}) not "
            f"ready after {timeout} s; see {self.log.name} and the session's "
            "logs/dashboard_agent.log"
        )

    def add_node(self, num_cpus: int = 1) -> subprocess.Popen:
        """Start one more node (a full raylet) joining this head."""
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                f"--address={self.gcs_address}",
                f"--num-cpus={num_cpus}",
                "--node-ip-address=127.0.0.1",
                *(f"--{name}={port}" for name, port in _agent_ports().items()),
                "--block",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**self.env, "RAY_raylet_start_wait_time_s": "120"},
        )
        self.nodes.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [*self.nodes, self.proc]:
            _terminate(proc)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _distinct_ports(n: int, taken: tuple[int, ...] = ()) -> list[int]:
    """``n`` free ports, none twice and none in ``taken``: each free_port() is free when
    asked, so two calls can give the same port (Ray then refuses to start)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports and port not in taken:
            ports.append(port)
    return ports


def _agent_ports(taken: tuple[int, ...] = ()) -> dict[str, int]:
    """Free ports for a node's agents. Ray's defaults (the dashboard agent's HTTP port is
    52365) are the same for every node on the machine, so a second head started beside the
    first (tests run in two processes) would have no job agent: `ray job submit` is then
    refused with "No available agent" for as long as the head lives."""
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port")
    names += ("runtime-env-agent-port", "metrics-export-port")
    return dict(zip(names, _distinct_ports(len(names), taken)))


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM the process we started; SIGKILL its own process group if it lingers."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def no_hang(seconds=5):
    """Fail, rather than hang, a block that waits on a FIFO."""

    def stop(*_):
        raise TimeoutError("blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
