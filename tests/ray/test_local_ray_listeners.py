"""The private local Ray of a run without --address listens on loopback only (README,
Security): every TCP listener of the driver and of the Ray processes it starts."""

from __future__ import annotations

import ipaddress
import os

# Listeners that cannot be bound to loopback (README, Security): none as of Ray 2.60.
UNBINDABLE: set[tuple[str, str]] = set()


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def ray_listeners() -> list[tuple[str, int, str]]:
    """(ip, port, process name) of each TCP listener of this process and its children."""
    import psutil

    me = psutil.Process()
    procs = {p.pid: p for p in [me, *me.children(recursive=True)]}
    out = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in procs:
            try:
                name = procs[conn.pid].name()
            except psutil.Error:
                name = "?"
            out.append((conn.laddr.ip, conn.laddr.port, name))
    return sorted(out)


def _ray_processes():
    import psutil

    return psutil.Process().children(recursive=True)


def _auth_seen_by_a_worker() -> tuple[str | None, bool]:
    return os.environ.get("RAY_AUTH_MODE"), bool(os.environ.get("RAY_AUTH_TOKEN"))


def test_local_ray_binds_every_listener_to_loopback(monkeypatch):
    """Also: token authentication is on whatever RAY_AUTH_MODE Ray would take as off, and
    with no writable home (Ray's own token file is ~/.ray/auth_token)."""
    import pytest
    import ray

    from committee.distributed.cluster import connect, free_port

    assert not ray.is_initialized()
    monkeypatch.setenv("RAY_AUTH_MODE", "junk")  # Ray: no auth, no warning
    with pytest.raises(ValueError, match="^RAY_AUTH_MODE 'junk' is unknown"):
        connect(num_cpus=1)
    assert not ray.is_initialized()
    monkeypatch.delenv("RAY_AUTH_MODE")
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/proc/nohome")
    connect(num_cpus=1)  # exactly as a run without --address starts its Ray
    try:
        # a task, so a worker process (and its listener) exists too
        assert ray.get(ray.remote(free_port).options(num_cpus=0.5).remote()) > 0
        assert ray.get(ray.remote(_auth_seen_by_a_worker).options(num_cpus=0.5).remote()) == (
            "token",
            True,
        )
        listeners = ray_listeners()
        names = {name for _, _, name in listeners}
        assert {"gcs_server", "raylet"} <= names, listeners  # the measurement sees Ray's own
        exposed = {(ip, name) for ip, _, name in listeners if not _is_loopback(ip)}
        assert exposed == UNBINDABLE, "\n".join(map(str, listeners))
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        # A signal to the command's process group (kill %1, a job runner's stop) must not
        # reach Ray's processes under it: they are in sessions of their own.
        in_my_group = [p.name() for p in _ray_processes() if os.getpgid(p.pid) == os.getpgrp()]
        assert in_my_group == [], in_my_group
    finally:
        ray.shutdown()
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # driver's restored
    assert os.environ.get("RAY_AUTH_TOKEN") is None  # the token lived in Ray's processes only


_DRIVER = """
import os, sys
from committee.distributed.cluster import connect
connect(num_cpus=1)
import psutil
print(" ".join(str(p.pid) for p in psutil.Process().children(recursive=True)), flush=True)
sys.stdin.read()
"""


def test_the_private_rays_processes_die_with_a_killed_driver():
    """Out of the command's process group, Ray's processes still share its fate: a driver
    killed with SIGKILL (no atexit, no ray.shutdown) takes its gcs_server and raylet along."""
    import subprocess
    import sys

    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pids = [int(pid) for pid in proc.stdout.readline().split()]
        daemons = [p for p in map(psutil.Process, pids) if p.name() in {"raylet", "gcs_server"}]
        assert len(daemons) == 2, pids
        assert all(os.getsid(p.pid) != proc.pid for p in daemons)  # out of its session
    finally:
        proc.kill()
        proc.wait(timeout=30)
    _, alive = psutil.wait_procs(daemons, timeout=20)
    assert alive == [], [p.name() for p in alive]


_SHUTDOWN_UNDER_SIGTERMS = """
import os, signal, threading, time
from committee.distributed import cluster
handled = []
signal.signal(signal.SIGTERM, lambda signum, frame: handled.append(signum))
cluster.connect(num_cpus=1)
stop = threading.Event()
def send():
    while not stop.is_set():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
sender = threading.Thread(target=send)
sender.start()
time.sleep(0.2)
cluster.disconnect()
stop.set()
sender.join()
os.kill(os.getpid(), signal.SIGTERM)  # after the shutdown too
time.sleep(0.1)
print(len(handled), flush=True)
"""


def test_sigterms_during_and_after_rays_shutdown_reach_the_commands_handler():
    """Ray's core worker, destroyed by ray.shutdown, sets SIGTERM back to the default action
    behind Python's back: a SIGTERM then killed the process by the signal (a second SIGTERM
    while a command stopped: no line, no exit status of its own). disconnect() installs the
    handlers again: a SIGTERM every 10 ms through the whole shutdown reaches the handler."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _SHUTDOWN_UNDER_SIGTERMS],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert int(proc.stdout.split()[-1]) > 20  # the shutdown lasts about a second


def test_a_hard_stop_kills_the_sessions_its_children_lead_and_nothing_else():
    """The second signal's way out (no ray.shutdown): the private Ray's sessions (the raylet
    with its agents and workers, grandchildren of the command) die with it. A child in the
    command's own session, or leading a session but not running Ray's programs, is left."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    import ray

    from committee.distributed.cluster import kill_private_ray

    def daemon(*argv):  # a session leader with a child of its own; prints the child's pid
        code = (
            "import subprocess, time\nchild = subprocess.Popen(['sleep', '60'])\n"
            "print(child.pid, flush=True)\ntime.sleep(60)"
        )
        return subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    rays = daemon(os.path.join(os.path.dirname(ray.__file__), "raylet"))  # as Ray names it
    other = daemon()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        grandchild, others_child = int(rays.stdout.readline()), int(other.stdout.readline())
        kill_private_ray()
        assert rays.wait(timeout=10) == -signal.SIGKILL
        deadline = time.time() + 10
        while time.time() < deadline and _alive(grandchild):
            time.sleep(0.05)
        assert not _alive(grandchild)
        assert other.poll() is None and _alive(others_child) and bystander.poll() is None
    finally:
        for proc in (rays, other):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the session, its child too
        for proc in (rays, other, bystander):
            proc.kill()
            proc.wait()


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (its parent, killed, no longer reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
