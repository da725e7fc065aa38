"""`committee submit`: every option, the run's after `--` too, is checked before anything is
sent (no Ray is imported here): one line on stderr, exit status 2."""

from __future__ import annotations

import pytest

from committee.app import cli

CASES = [  # (arguments, the line on stderr)
    (
        ["--", "--epochs", "0"],
        "committee submit: error: argument --epochs: 0 must be an integer in 1..100000",
    ),
    (
        ["--", "--preset", "huge"],
        "committee submit: error: argument --preset: invalid choice: 'huge' "
        "(choose from 'seed', 'strong')",
    ),
    (
        ["--address", "127.0.0.1:6379", "--", "--epochs", "1"],
        "committee: error: --address '127.0.0.1:6379' is not a job server address; expected "
        "http://HOST:PORT (the cluster dashboard's)",
    ),
    *(
        (
            ["--address", bad, "--", "--epochs", "1"],
            f"committee: error: --address {bad!r} is not a job server address; expected "
            "http://HOST:PORT (the cluster dashboard's)",
        )
        for bad in ("http://127.0.0.1:99999", "http://[::1", "http://127.0.0.1:8265\nX")
    ),
    (
        ["--runtime-env-json", "[" * 40_000 + "]" * 40_000, "--", "--epochs", "1"],
        "committee: error: --runtime-env-json is nested too deeply; expected a flat object",
    ),
    (
        ["--runtime-env-json", "{env_vars", "--", "--epochs", "1"],
        "committee: error: --runtime-env-json is not JSON: Expecting property name enclosed "
        "in double quotes: line 1 column 2 (char 1)",
    ),
    (
        ["--runtime-env-json", "[1]", "--", "--epochs", "1"],
        'committee: error: --runtime-env-json must be a JSON object, e.g. {"env_vars": {...}}',
    ),
]


@pytest.mark.parametrize("args, line", CASES)
def test_bad_submit_options_are_one_line_before_anything_is_sent(args, line, capsys):
    assert _exit_status(["submit", *args]) == 2
    assert capsys.readouterr().err.strip() == line


@pytest.mark.parametrize("kind", ["fifo", "missing"])
def test_a_token_path_ray_could_not_read_is_refused_before_ray(kind, tmp_path, monkeypatch, capsys):
    import os

    path = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(path)  # Ray's token loader would block on it
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    args = ["submit", "--address", "http://127.0.0.1:1", "--", "--epochs", "1"]
    assert _exit_status(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"committee: error: RAY_AUTH_TOKEN_PATH {str(path)!r} is not a readable file; expected "
        "the file holding Ray's token (or unset it)"
    )


def test_an_argument_that_is_not_utf8_is_one_line_before_any_work(tmp_path, capsys):
    """Ray hands the command line to its core worker as UTF-8: such a name failed inside
    ray.init, after the inputs were accepted (exit 1)."""
    bad = str(tmp_path) + "/bad\udcff.png"  # how Python decodes the byte 0xff of a file name
    assert _exit_status(["predict", str(tmp_path), bad]) == 2
    assert capsys.readouterr().err.strip() == (
        f"committee: error: argument {bad!r} is not valid UTF-8 (a file name's raw bytes); "
        "expected UTF-8 names: rename the file, or name its folder instead"
    )


def test_a_working_dir_without_the_job_script_is_refused(tmp_path, capsys):
    assert cli.main(["submit", "--working-dir", str(tmp_path), "--", "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"committee: error: --working-dir '{tmp_path}' holds no jobs/train_committee.py; "
        "expected a copy of this project (its repository's folder)"
    )


def _exit_status(argv: list[str]) -> int:
    """cli.main's return value, or the status of the SystemExit argparse raises."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code
