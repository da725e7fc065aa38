"""Every command (run, tune, report, predict, export) goes through one error boundary
(cli.guarded), so each failure ends alike whichever command met it: one line on stderr and
exit status 2 for a known condition, 130 for Ctrl-C, 143 for SIGTERM, 1 with the traceback in
a file for anything else (README, "Exit status"). Run in-process, each command's work faked."""

from __future__ import annotations

import errno
import os
import re
import signal
import sys

import pytest

from committee.app import cli
from committee.errors import RunFolderError, Terminated


@pytest.fixture(autouse=True)
def _handlers_restored():
    """A test that stands a fake for os._exit leaves the stop handlers installed: not the next."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])


COMMANDS = {  # command -> (the module and function doing its work, its arguments)
    "run": ("committee.app.run", "run", ["--output", "{tmp}", "--run-name", "x"]),
    "tune": ("committee.app.tune", "tune", ["--output", "{tmp}", "--run-name", "x"]),
    "report": ("committee.report.render", "render", ["{tmp}"]),
    "predict": ("committee.app.predict", "predict", ["{tmp}", "a.npy"]),
    "export": ("committee.app.export", "export", ["{tmp}"]),
}

FAILURES = {  # failure -> (what the work raises, exit status, words of the one line)
    "known": (RunFolderError("/r/results.json: field 'x' has 1"), 2, "field 'x' has 1"),
    "disk-full": (
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/r/figures/a.png"),
        2,
        "no space left on device writing /r/figures/a.png; free space and ",
    ),
    "read-only": (
        OSError(errno.EROFS, os.strerror(errno.EROFS), "/r/.report.md.abcdefgh.tmp"),
        2,
        "error: /r/.report.md.abcdefgh.tmp: Read-only file system",
    ),
    "immutable": (
        PermissionError(errno.EPERM, "Operation not permitted", "/r/.t.tmp", None, "/r/report.md"),
        2,
        "error: /r/report.md: Operation not permitted",
    ),
    "name-too-long": (
        OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), "/r/" + "m" * 300),
        2,
        "File name too long",
    ),
    "decoder": (NotImplementedError("Unimplemented pixel format"), 1, "unexpected "),
    "overflow": (OverflowError("int too large to convert to float"), 1, "unexpected "),
    "ctrl-c": (KeyboardInterrupt(), 130, "committee: interrupted; "),
    "sigterm": (Terminated(signal.SIGTERM), 143, "committee: interrupted; "),
}


def _fake_work(monkeypatch, command: str, raised: BaseException) -> None:
    import importlib

    module, function, _ = COMMANDS[command]

    def work(*args, **kwargs):
        raise raised

    monkeypatch.setattr(importlib.import_module(module), function, work)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_ends_each_failure_alike(command, failure, monkeypatch, capsys, tmp_path):
    raised, status, words = FAILURES[failure]
    _fake_work(monkeypatch, command, raised)
    args = [a.format(tmp=tmp_path) for a in COMMANDS[command][2]]
    assert cli.main([command, *args]) == status
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err
    if status == 1:  # the traceback is in the file the line names
        log = re.search(r"\(traceback in (.+)\)$", lines[0]).group(1)
        assert type(raised).__name__ in open(log).read()


def test_sigterm_stops_the_work_and_exits_143_in_one_line(monkeypatch, capsys, tmp_path):
    """A real SIGTERM while the command works; the process's handlers are put back after."""
    from committee.app import predict

    def work(options):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the work")

    monkeypatch.setattr(predict, "predict", work)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert cli.main(["predict", str(tmp_path), "a.npy"]) == 143
    assert capsys.readouterr().err == "committee: interrupted; nothing was written\n"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_sigterm_a_library_turned_into_a_plain_keyboardinterrupt_still_exits_143(
    monkeypatch, capsys, tmp_path
):
    """Ray's C++ waits (ray.get, ray.wait: a search's every step) swallow the exception the
    handler raises and raise a new, plain KeyboardInterrupt: the signal received decides."""
    from committee.app import predict

    def work(options):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # as ray._raylet.check_status does
        raise AssertionError("SIGTERM did not interrupt the work")

    monkeypatch.setattr(predict, "predict", work)
    assert cli.main(["predict", str(tmp_path), "a.npy"]) == 143
    assert capsys.readouterr().err == "committee: interrupted; nothing was written\n"

    def ctrl_c(options):  # the next command starts afresh: a plain Ctrl-C is 130 again
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "predict", ctrl_c)
    assert cli.main(["predict", str(tmp_path), "a.npy"]) == 130


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_second_signal_while_ray_shuts_down_is_one_line_not_a_traceback(
    second, monkeypatch, capsys, tmp_path
):
    """Ctrl-C, then Ctrl-C (or SIGTERM) again while Ray shuts down: the process ends at once
    with one more line, 128 + the signal's number."""
    from committee.app import predict
    from committee.distributed import cluster

    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)  # the test process must live on: stands for os._exit

    def interrupted(options):
        raise KeyboardInterrupt

    def slow_shutdown():
        os.kill(os.getpid(), second)
        raise AssertionError("the second signal did not end the shutdown")

    monkeypatch.setattr(predict, "predict", interrupted)
    monkeypatch.setattr(cluster, "disconnect", slow_shutdown)
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        cli.main(["predict", str(tmp_path), "a.npy"])
    assert exits == [128 + second]
    assert capsys.readouterr().err == (
        "committee: interrupted; nothing was written\n"
        "committee: interrupted while stopping; exited without waiting for it\n"
    )


def test_a_second_ctrl_c_while_the_first_unwinds_ends_the_process_in_one_line(
    monkeypatch, capsys, tmp_path
):
    """Two Ctrl-C 0.2 s apart: the second lands in Ray's clean-up, which the first is still
    unwinding through (Ray Data's executor), before the boundary sees the first. Interrupting
    that clean-up half-way once left Ray's core worker to end the process with status 1."""
    from committee.app import predict

    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)  # stands for os._exit

    def work(options):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            raise AssertionError("Ctrl-C did not interrupt the work")
        finally:  # stands for the library's clean-up on the way out
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(predict, "predict", work)
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        cli.main(["predict", str(tmp_path), "a.npy"])
    assert exits == [130]
    assert capsys.readouterr().err == (
        "committee: interrupted while stopping; exited without waiting for it\n"
    )


def test_an_interrupt_a_library_turned_into_another_error_is_still_an_interrupt(
    monkeypatch, capsys, tmp_path
):
    """A C extension interrupted while it initialises raises ImportError from the
    KeyboardInterrupt: still 130 and one line, before the command's boundary too."""
    from committee.app import predict

    def interrupted_import(*_):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(predict, "predict", interrupted_import)
    assert cli.main(["predict", str(tmp_path), "a.npy"]) == 130
    assert capsys.readouterr().err == "committee: interrupted; nothing was written\n"

    registered = []
    monkeypatch.setattr(cli.atexit, "register", registered.append)
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:  # as the process's one command, interrupted while it imports its libraries
        assert cli.as_process(interrupted_import) == 130
        assert capsys.readouterr().err == "committee: interrupted; nothing was written\n"
        with pytest.raises(SystemExit):  # anything else passes through
            cli.as_process(lambda: sys.exit(2))
        registered[0]()  # the last atexit callback: a signal then no longer kills the teardown
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])


def test_connect_keeps_the_callers_signal_handlers_across_ray_init():
    """ray.init replaces SIGTERM's handler; connect's block puts the caller's back."""
    from committee.distributed.cluster import _signal_handlers_kept

    def ours(signum, frame):
        pass

    saved = signal.signal(signal.SIGTERM, ours)
    try:
        with _signal_handlers_kept():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what ray.init does to it
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, saved)


def test_a_sigterm_while_ray_starts_is_the_commands_not_rays(monkeypatch):
    """ray.init sets a SIGTERM handler of its own (sys.exit(15), nothing said) through
    ray._private.utils.set_sigterm_handler before it starts Ray: within connect's block that
    call does nothing, so a SIGTERM then still stops the command in one line, exit 143."""
    import types

    from committee.distributed.cluster import _signal_handlers_kept

    def rays(handler):
        signal.signal(signal.SIGTERM, handler)

    fake = types.SimpleNamespace(set_sigterm_handler=rays)  # Ray is unimportable here
    monkeypatch.setitem(sys.modules, "ray._private.utils", fake)

    def ours(signum, frame):
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, ours)
    with pytest.raises(Terminated):
        with _signal_handlers_kept():
            fake.set_sigterm_handler(lambda signum, frame: sys.exit(signum))  # as ray.init
            os.kill(os.getpid(), signal.SIGTERM)
    assert fake.set_sigterm_handler is rays and signal.getsignal(signal.SIGTERM) is ours


def test_a_signal_the_process_was_started_ignoring_stays_ignored(monkeypatch, tmp_path):
    """`cmd &` and nohup start a command with SIGINT ignored: the boundary leaves it so."""
    from committee.app import predict

    def work(options):
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "predict", work)
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert cli.main(["predict", str(tmp_path), "a.npy"]) == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved)
