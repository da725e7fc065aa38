"""Bad input: each case is one line on stderr naming the value, exit status 2, no Ray cluster
started and nothing written. (Checks that need a cluster are in test_run_integration.py.)"""

from __future__ import annotations

import sys

import pytest
from helpers import corrupt

from committee.app import cli

DATA_CASES = [  # (how the data folder is damaged, which file, expected words)
    ("delete", "test_labels", "t10k-labels-idx1-ubyte.gz: file missing"),
    ("truncate", "train_labels", "truncated gzip data"),
    ("not-gzip", "test_images", "not valid gzip"),
    ("magic", "test_images", "IDX magic number 2050, expected 2051"),
    ("wrong-count", "train_labels", "holds 10000 labels, expected 60000"),
    ("image-size", "test_images", "image size 32x32, expected 28x28"),
    ("label-range", "test_labels", "label 12 found, expected labels in 0..9"),
    ("flip-pixel", "test_images", "checksum mismatch"),
]


OPTION_CASES = [  # (arguments, expected words)
    (["--data-dir", "/nonexistent/fmnist"], "data folder /nonexistent/fmnist does not exist"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--members", "model1,model7"], "member 'model7' is not in preset 'seed'"),
    (["--members", ","], "names no member"),
    (["--epochs", "0"], "--epochs: 0 must be an integer in 1..100000"),
    (["--epochs", "-3"], "--epochs: -3 must be an integer in 1..100000"),
    (["--epochs", "ten"], "'ten' is not an integer"),
    (["--batch-size", "0"], "--batch-size: 0 must be an integer in 1..60000"),
    (
        ["--learning-rate", "0"],
        "--learning-rate: 0 must be a number in [1.1754943508222875e-38, 1e+38]",
    ),
    (
        ["--learning-rate", "-0.1"],
        "--learning-rate: -0.1 must be a number in [1.1754943508222875e-38, 1e+38]",
    ),
    (["--learning-rate", "fast"], "'fast' is not a number"),
    (["--learning-rate", "nan"], "nan must be a number in [1.1754943508222875e-38, 1e+38]"),
    (["--limit-train", "5"], "--limit-train: 5 must lie in 10..60000"),
    (["--workers-per-member", "2"], "--workers-per-member 2 is not supported"),
    (["--cpus-per-member", "0"], "--cpus-per-member: 0 must be a number in (0, 1000000]"),
    (["--gpus-per-member", "-1"], "--gpus-per-member: -1 must be a number in [0, 1000000]"),
    (["--max-failures", "-1"], "--max-failures: -1 must lie in 0..10000"),
    (["--run-name", "a/b"], "--run-name 'a/b' must be a plain folder name"),
    (["--run-name", " x"], "--run-name ' x' must be a plain folder name"),
    (["--run-name", "a\nb"], "--run-name 'a\\nb' must be a plain folder name"),
    (["--run-name", "a" * 246], "--run-name of 246 bytes is too long; expected at most 245"),
    (["--seed", "-1"], "--seed: -1 is out of range; expected an integer in 0..4294967295"),
    (["--seed", "4294967296"], "--seed: 4294967296 is out of range"),
    (["--storage", ""], "--storage '' is empty"),
    (
        ["--storage", "ftp://nowhere/x"],
        "--storage 'ftp://nowhere/x': scheme ftp:// is not supported",
    ),
    (["--split", "random"], "invalid choice: 'random'"),
    (["--member-minutes", "0"], "--member-minutes: 0 must be a finite number in (0, 525600]"),
    (["--member-minutes", "inf"], "--member-minutes: inf must be a finite number in (0, 525600]"),
    # numbers that parse but that the layers below cannot take (minutes * 60 overflows; Ray
    # counts resources in units of 0.0001): refused here, not after Ray starts
    (
        ["--member-minutes", "1e307"],
        "--member-minutes: 1e307 must be a finite number in (0, 525600]",
    ),
    (
        ["--cpus-per-member", "0.000000001"],
        "0.000000001 must be a number in (0, 1000000], a multiple of 0.0001",
    ),
    (
        ["--cpus-per-member", "0.00015"],
        "0.00015 must be a number in (0, 1000000], a multiple of 0.0001",
    ),
    (["--gpus-per-member", "1e300"], "--gpus-per-member: 1e300 must be a number in [0, 1000000]"),
    (["--epochs", "99999999999999999999"], "--epochs: 99999999999999999999 must be an integer in"),
    (["--max-failures", "99999999999999999999"], "--max-failures: 99999999999999999999 must lie"),
    (["--steps-per-execution", "0"], "--steps-per-execution: 0 must lie in 1..60000"),
]


def _run_and_check(args, expected, capsys, tmp_path):
    out = tmp_path / "runs"
    try:
        code = cli.main(["run", "--output", str(out), *args])
    except SystemExit as exit_:  # argparse's own checks
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert expected in err
    assert not out.exists() or not any(out.iterdir())  # nothing written
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()  # no cluster was started


@pytest.mark.parametrize("how, key, expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_one_line_before_ray(how, key, expected, data_copy, capsys, tmp_path):
    corrupt(data_copy, key, how)
    _run_and_check(["--data-dir", str(data_copy)], expected, capsys, tmp_path)


@pytest.mark.parametrize("args, expected", OPTION_CASES, ids=[" ".join(c[0]) for c in OPTION_CASES])
def test_bad_options_are_one_line_before_ray(args, expected, capsys, tmp_path):
    _run_and_check(args, expected, capsys, tmp_path)


def test_unwritable_output(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    code = cli.main(["run", "--output", str(tmp_path / "file" / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not writable" in err and len(err.splitlines()) == 1


def test_report_of_a_missing_run(capsys, tmp_path):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "results.json not found" in capsys.readouterr().err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--preset",
        "--members",
        "--epochs",
        "--data-dir",
        "--output",
        "--address",
        "--seed",
        "--limit-train",
        "--run-name",
        "--overwrite",
        "--max-failures",
    ):
        assert flag in out


@pytest.mark.parametrize(
    "args, minutes",
    [
        (["--preset", "strong"], 42.0),  # the preset's default budget
        (["--preset", "strong", "--member-minutes", "5"], 5.0),
        (["--preset", "strong", "--epochs", "2"], None),  # epochs asked for are trained in full
        (["--preset", "strong", "--epochs", "2", "--member-minutes", "5"], 5.0),
        (["--preset", "seed"], None),
    ],
)
def test_time_budget_defaults_to_the_presets(args, minutes):
    options = cli.options_from_args(cli.build_parser().parse_args(["run", *args]))
    assert options.budget_minutes() == minutes


def test_help_states_the_presets_time_budget(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: the preset's, 42 for strong; none for seed, unless --epochs is given)" in out


def test_log_failure_without_a_run_folder_uses_a_temporary_file(tmp_path):
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        path = cli.log_failure(exc, tmp_path / "missing")
    try:
        assert "RuntimeError: boom" in path.read_text()
        assert not (tmp_path / "missing").exists()
    finally:
        path.unlink()


ENVIRONMENT_CASES = [  # (variable, value, expected words): what Ray or Keras would take badly
    ("RAY_AUTH_MODE", "junk", "RAY_AUTH_MODE 'junk' is unknown; expected one of token, disabled"),
    ("RAY_AUTH_MODE", "Token", "RAY_AUTH_MODE 'Token' is unknown"),
    ("KERAS_BACKEND", "torch", "KERAS_BACKEND 'torch' is unknown; expected one of tensorflow, jax"),
    ("RAY_AUTH_TOKEN_PATH", "/nonexistent/token", "RAY_AUTH_TOKEN_PATH '/nonexistent/token' is"),
    ("RAY_ADDRESS", "http://127.0.0.1:8265", "RAY_ADDRESS 'http://127.0.0.1:8265' is not a Ray"),
    # Ray's folder for files and Unix sockets (RAY_TMPDIR, else TMPDIR): one line, not Ray's
    # "AF_UNIX path length cannot exceed 107 bytes" or NotADirectoryError after it starts
    ("TMPDIR", "/" + "x" * 60, "TMPDIR '/xxxxxxxxxx"),
    ("RAY_TMPDIR", "/" + "x" * 39, "is 40 bytes long; expected at most 32"),
    ("TMPDIR", "/etc/passwd", "TMPDIR '/etc/passwd' is not a folder"),
    ("RAY_TMPDIR", "", "RAY_TMPDIR is set but empty"),
]


@pytest.mark.parametrize("name, value, expected", ENVIRONMENT_CASES, ids=lambda x: str(x)[:20])
def test_bad_environment_is_one_line_before_ray(
    name, value, expected, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv(name, value)
    _run_and_check([], expected, capsys, tmp_path)
    assert cli.main(["predict", str(tmp_path), str(tmp_path)]) == 2  # every command
    assert expected in capsys.readouterr().err


def test_a_backend_not_installed_is_one_line_before_ray(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "jax", None)  # Python's own "not importable here"
    _run_and_check(
        ["--backend", "jax"], 'install it with pip install -e ".[jax]"', capsys, tmp_path
    )


def test_rays_temp_folder_is_the_one_ray_takes():
    """RAY_TMPDIR wins over TMPDIR (as Ray's get_default_system_temp_dir); unset, /tmp."""
    from committee.distributed.cluster import TEMP_DIR_MAX, check_ray_temp_dir

    check_ray_temp_dir({"RAY_TMPDIR": "/tmp", "TMPDIR": "/etc/passwd"})
    check_ray_temp_dir({})
    check_ray_temp_dir({"TMPDIR": "/" + "x" * (TEMP_DIR_MAX - 1)})  # at the limit
    with pytest.raises(ValueError, match="^TMPDIR '/xx"):
        check_ray_temp_dir({"TMPDIR": "/" + "x" * TEMP_DIR_MAX})
