"""errors.no_space and errors.disk_full: a full disk found in any error's text or cause chain,
reported as one line naming the path and how to resume."""

from __future__ import annotations

import errno
import os

import pytest

from committee.errors import DiskFull, disk_full, no_space

ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


def advice(path: str) -> str:
    return (
        f"[Errno 28] no space left on device writing {path}; free space and rerun with the "
        "same --run-name to resume (finished members and checkpoints are kept)"
    )


def wrapped(inner: BaseException, outer: BaseException, explicit: bool) -> BaseException:
    """``outer`` chained to ``inner`` as ``raise outer from inner`` (explicit) or a ``raise``
    inside ``except inner`` (implicit) would chain it."""
    if explicit:
        outer.__cause__ = inner
    outer.__context__ = inner
    return outer


class RayTaskError(Exception):
    """Stands for Ray's wrapper of a remote task's error: its own message, the cause chained."""


def test_an_enospc_oserror_names_its_file():
    error = OSError(errno.ENOSPC, ENOSPC, "/data/run/train/model1/model.keras")
    assert no_space(error) == "/data/run/train/model1/model.keras"
    full = disk_full(error, "/data/run")
    assert isinstance(full, DiskFull) and isinstance(full, OSError)
    assert full.errno == 28
    assert str(full) == advice("/data/run/train/model1/model.keras")


def test_a_message_naming_a_path_after_no_space_left_on_device_gives_that_path():
    text = "OSError: [Errno 28] No space left on device: '/mnt/s/run/checkpoint_1/state.json'"
    assert no_space(text) == "/mnt/s/run/checkpoint_1/state.json"
    assert no_space("write failed: No space left on device /var/tmp/x.npy") == "/var/tmp/x.npy"
    assert str(disk_full(RuntimeError(text), "/mnt/s/run")) == advice(
        "/mnt/s/run/checkpoint_1/state.json"
    )


@pytest.mark.parametrize("explicit", [True, False], ids=["__cause__", "__context__"])
def test_an_enospc_in_the_cause_chain_is_found_and_where_names_the_folder(explicit):
    """A Ray remote error wraps the worker's OSError; its own message says nothing of disks."""
    error = wrapped(
        OSError(errno.ENOSPC, ENOSPC), RayTaskError("ray::predict_member() failed"), explicit
    )
    assert no_space(error) == ""
    assert str(disk_full(error, "/data/run/train")) == advice("/data/run/train")


def test_a_path_in_a_chained_errors_message_is_found():
    inner = RuntimeError(f"[Errno 28] {ENOSPC}: '/data/run/tune/model1/trials/x'")
    error = wrapped(inner, RayTaskError("ray::train() failed"), explicit=True)
    assert no_space(error) == "/data/run/tune/model1/trials/x"


def test_errno_28_with_no_path_falls_back_to_where():
    assert no_space("copy failed: [Errno 28]") == ""
    assert str(disk_full(RuntimeError("copy failed: [Errno 28]"), "/data/run")) == advice(
        "/data/run"
    )


def test_an_enospc_oserror_without_the_usual_text_names_its_filename():
    error = OSError(errno.ENOSPC, "quota reached", "/data/run/results.json")
    assert no_space(error) == ""  # "Errno 28" is in its text, no path after ENOSPC's words
    assert str(disk_full(error, "/data/run")) == advice("/data/run/results.json")


@pytest.mark.parametrize(
    "error",
    [
        None,
        "",
        ValueError("member model1 diverged"),
        OSError(errno.EACCES, os.strerror(errno.EACCES), "/data/run/results.json"),
        "[Errno 2] No such file or directory: '/data/x'",
    ],
    ids=["none", "empty", "value-error", "eacces", "enoent-text"],
)
def test_an_unrelated_error_is_not_a_full_disk(error):
    assert no_space(error) is None


def test_an_unrelated_cause_chain_is_not_a_full_disk():
    error = wrapped(FileNotFoundError(errno.ENOENT, "gone", "/x"), RuntimeError("a"), True)
    assert no_space(error) is None


def test_disk_full_of_a_disk_full_returns_it_unchanged():
    full = disk_full(OSError(errno.ENOSPC, ENOSPC, "/data/a"), "/data")
    assert disk_full(full, "/elsewhere") is full


def test_the_message_is_one_line_saying_to_free_space_and_rerun_with_the_same_run_name():
    error = wrapped(
        OSError(errno.ENOSPC, ENOSPC),
        RayTaskError(f"ray::f()\n  File 'x.py', line 3\nOSError: [Errno 28] {ENOSPC}: '/d/f'"),
        explicit=True,
    )
    message = str(disk_full(error, "/d"))
    assert "\n" not in message
    assert message == advice("/d/f")
    assert "free space and rerun with the same --run-name" in message
