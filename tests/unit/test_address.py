"""`--address` / RAY_ADDRESS treated as untrusted input: its form is checked before anything
starts (one line naming whichever of the two gave it), and a port where no Ray head answers
fails in bounded time instead of being retried for minutes."""

from __future__ import annotations

import sys

import pytest

from committee.app import cli
from committee.distributed import address

BAD_ENV = [  # (RAY_ADDRESS, expected words)
    ("999.1.1.1:notaport", "port 'notaport' is not a number in 1..65535"),
    ("garbage", "no port (host:port)"),
    ("http://127.0.0.1:8265", "not a GCS address"),
    ("127.0.0.1:70000", "port '70000' is not a number in 1..65535"),
]


@pytest.mark.parametrize("value, expected", BAD_ENV, ids=[c[0] for c in BAD_ENV])
def test_bad_ray_address_variable_is_one_line_before_ray(
    value, expected, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("RAY_ADDRESS", value)
    out = tmp_path / "runs"
    code = cli.main(["run", "--epochs", "1", "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert f"RAY_ADDRESS {value!r} is not a Ray address" in err and expected in err
    assert "--address" not in err  # not given, so not blamed
    assert not out.exists()  # nothing written
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()  # no cluster was started


@pytest.mark.parametrize(
    "value, expected",
    [
        ("localhost", "no port"),
        ("ray://h:1/path", "only host:port"),
        ("999.1.1.1:6379", "not an IPv4 address"),
        ("::1:6379", "[brackets]"),
        ("tcp://h:1", "unknown scheme 'tcp'"),
        ("", "it is empty"),
    ],
)
def test_bad_address_option_names_the_option(value, expected, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RAY_ADDRESS", "garbage")  # the option wins, as in ray.init
    code = cli.main(["run", "--address", value, "--output", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"--address {value!r} is not a Ray address" in err and expected in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "given, env, resolved",
    [
        (None, None, (None, "")),
        (None, "", (None, "")),  # empty counts as unset, as in Ray
        ("10.0.0.5:6379", "garbage", ("10.0.0.5:6379", "--address")),
        ("auto", "10.0.0.5:6379", ("10.0.0.5:6379", "RAY_ADDRESS")),  # auto defers to the variable
        ("auto", None, ("auto", "--address")),
        ("local", "10.0.0.5:6379", (None, "--address")),
        (None, "ray://head:10001", ("ray://head:10001", "RAY_ADDRESS")),
        (None, "[::1]:6379", ("[::1]:6379", "RAY_ADDRESS")),
    ],
)
def test_resolve_follows_ray_init(given, env, resolved, monkeypatch):
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert address.resolve(given) == resolved
