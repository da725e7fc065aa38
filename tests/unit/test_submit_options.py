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
