"""`--address` / RAY_ADDRESS treated as untrusted input: its form is checked before anything
starts (one line naming whichever of the two gave it), and a port where no Ray head answers
fails in bounded time instead of being retried for minutes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import ROOT, free_port, run_cli


@pytest.fixture
def http_server():
    """`python -m http.server` on 127.0.0.1, stopped by its PID."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("http.server did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def _probe_in_fresh_process(address: str, env: dict) -> subprocess.CompletedProcess:
    """check_ray_head in a new interpreter: Ray caches the auth token per process."""
    code = (
        "import sys; from committee.distributed.cluster import check_ray_head\n"
        "try:\n    check_ray_head(sys.argv[1], '--address')\n"
        "except ConnectionError as exc:\n    sys.exit(f'error: {exc}')\nprint('answered')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, address],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_http_server_is_no_ray_head(http_server, scheme, tmp_path):
    value = f"{scheme}127.0.0.1:{http_server}"
    started = time.time()
    proc = run_cli(
        "run", "--epochs", "1", "--address", value, "--output", str(tmp_path), timeout=120
    )
    took = time.time() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert errors[0].startswith(
        f"committee: error: no Ray head answered at {value} (from --address)"
    )
    assert "expected a running Ray head (ray start --head)" in errors[0]
    assert took < 30, took
    assert not any(tmp_path.iterdir())


def test_silent_port_fails_within_the_deadline(silent_server, tmp_path):
    value = f"127.0.0.1:{silent_server}"
    started = time.time()
    proc = run_cli(
        "run", "--epochs", "1", "--output", str(tmp_path), env={"RAY_ADDRESS": value}, timeout=120
    )
    took = time.time() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert f"no Ray head answered at {value} (from RAY_ADDRESS)" in last
    assert "no answer within" in last
    assert took < 30, took


@pytest.mark.ray
def test_a_real_head_answers_with_its_token_and_refuses_without(ray_head, tmp_path):
    started = time.time()
    ok = _probe_in_fresh_process(ray_head.gcs_address, ray_head.env)
    assert ok.returncode == 0 and "answered" in ok.stdout, ok.stderr[-2000:]
    env = {k: v for k, v in ray_head.env.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    refused = _probe_in_fresh_process(ray_head.gcs_address, env)
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert "refused this client's token" in last and "RAY_AUTH_MODE=token" in last, last
    assert time.time() - started < 60
