"""Every error the project names, and the one-line form of any error.

The command line reports these in one line with exit status 2.

:class:`CommitteeError` marks a condition the project names and explains: bad input found
before work starts (:class:`UsageError`), a run folder, data file or search that cannot be
used as asked, a member that diverged. Anything else raised during a run is an unexpected
failure: exit status 1, its traceback logged (``committee.app.cli``). Both subclass ValueError, so
callers that caught ValueError keep working.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager


class CommitteeError(ValueError):
    """A known, named condition; its message is one line that says what to change."""


class UsageError(CommitteeError):
    """Bad input (an option, its combination with the cluster), found before work starts."""


@contextmanager
def usage_errors() -> Iterator[None]:
    """Mark the ValueErrors of the checks inside as :class:`UsageError` (same message).

    Used around validation only: a ValueError from the work itself is a failure, not bad
    input. Raises UsageError from the ValueError caught."""
    try:
        yield
    except CommitteeError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def one_line(
    exc: BaseException | str,
    limit: int | None = 200,
    pick: str | None = None,
    empty: str | None = None,
) -> str:
    """``exc``'s message on one line, cut at ``limit`` characters: for messages that quote an
    error from a library. ``pick``: None folds all its lines into one; "first" or "last" keeps
    that line only (a traceback's last line is its error). ``empty``: what a message with no
    text gives (default: the exception's class name)."""
    text = str(exc).strip()
    if pick is None:
        text = " ".join(text.split())
    elif text:
        text = text.splitlines()[0 if pick == "first" else -1]
    if limit is not None:
        text = text[:limit]
    if text:
        return text
    return type(exc).__name__ if empty is None else empty


# --------------------------------------------------------------------------- the named conditions


class RunFolderError(CommitteeError):
    """A run folder that cannot be used as asked: a file missing, malformed or unsafe to use;
    the folder in use, a finished run, another run's settings, or not made by this tool. The
    message is one line naming the folder or file, the field or value, and what was expected."""


class DataError(CommitteeError):
    """The data could not be found, fetched or verified. The message names the file."""


class NpyFormatError(ValueError):
    """A .npy header of a format version numpy's readers here do not take."""


class InputError(ValueError):
    """An input that cannot be classified; the message is one line naming the file."""


class SearchError(CommitteeError):
    """A search that cannot give a result as configured; the message says what to change."""


class MemberLoadError(CommitteeError):
    """A member's .keras file did not load, or is not a model of 28x28 images into 10 class
    probabilities (in its batch-inference actor, or in the driver for ``export``)."""


class CheckpointError(CommitteeError):
    """A file of a resume checkpoint did not load: ``file`` is its name within the checkpoint
    folder (``state.json`` or ``model.keras``), ``cause`` what went wrong reading it."""

    def __init__(self, file: str, cause: BaseException):
        self.file, self.cause = file, cause
        super().__init__(f"{file}: {type(cause).__name__}: {one_line(cause, None, pick='last')}")


class MemberDiverged(CommitteeError):
    """A member's loss became NaN or infinite; it was stopped and not saved."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, ``ray job stop``) received: stop as on Ctrl-C; the command line exits
    with 128 + ``signum`` (143) instead of Ctrl-C's 130."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


class DiskFull(OSError):
    """No space was left where the run writes; what finished is kept for a rerun."""


def no_space(error: BaseException | str | None) -> str | None:
    """The path in a 'No space left on device' error (or "" if it names none), else None."""
    text = "" if error is None else str(error)
    if isinstance(error, BaseException):
        cause = error
        while cause is not None:  # a remote error wraps the worker's OSError
            text += f"\n{cause!r}"
            cause = cause.__cause__ or cause.__context__
    if "No space left on device" not in text and "Errno 28" not in text:
        return None
    named = re.search(r"No space left on device\W+(?:\[[^]]*\]\s*)?'?(/[^'\s\n]+)", text)
    return named.group(1) if named else ""


RESUME = "rerun with the same --run-name to resume (finished members and checkpoints are kept)"


def disk_full(error, where: str, then: str = RESUME) -> DiskFull:
    """The one-line error for a full disk; ``where`` is the folder written when no path is
    known, ``then`` what to do once space is freed (a run's default: resume it)."""
    if isinstance(error, DiskFull):
        return error
    if isinstance(error, OSError) and error.filename:
        where = str(error.filename)
    return DiskFull(
        28,
        f"no space left on device writing {no_space(error) or where}; free space and {then}",
    )


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISREG, "a regular file"),
)


def file_kind(mode: int) -> str:
    """What an ``st_mode`` is, in words (``"a symbolic link"``, ``"a FIFO"``, …), for the
    one-line refusals of anything that is not a regular file."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")
