"""The errors the command line reports in one line with exit status 2.

:class:`CommitteeError` marks a condition the project names and explains: bad input found
before work starts (:class:`UsageError`), a run folder, data file or search that cannot be
used as asked, a member that diverged. Anything else raised during a run is an unexpected
failure: exit status 1, its traceback logged (``committee.app.cli``). Both subclass ValueError, so
callers that caught ValueError keep working.
"""

from __future__ import annotations

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


def one_line(exc: BaseException, limit: int | None = 200) -> str:
    """``exc``'s message on one line (white space folded, cut at ``limit`` characters), or
    its class name when it has none: for messages that quote an error from a library."""
    text = " ".join(str(exc).split())
    return (text if limit is None else text[:limit]) or type(exc).__name__
