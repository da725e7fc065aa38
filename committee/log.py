"""The project's one logger, ``committee``, and where its lines go in each process.

Driver code logs plainly (``logger.info(...)``); training code marks its lines as a member's
(``logger.info(..., extra=MEMBER)``). Where they go:

- anywhere (tests, bench, a notebook, the driver): a member's line to stdout as it is, the
  driver's own to stderr as ``[committee] <message>`` (:data:`TERMINAL`, installed by
  :func:`setup`, which every entry point calls) —
  or onto the live display while the driver shows one (``TERMINAL.display``, set by
  :func:`committee.app.progress.displaying`);
- a Ray Train worker: the same, and each line also passed to the driver's display queue
  (:func:`forwarding`).

Lines are written to ``sys.stdout`` / ``sys.stderr`` as they are when logged, never with
``print``: a Ray Train worker patches ``print`` to log the line as well as print it, so the
driver would show every line twice.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable

logger = logging.getLogger("committee")
MEMBER = {"member": True}  # ``extra`` of a line from the training code


def plural(count: int, noun: str, nouns: str | None = None, *, thousands: bool = False) -> str:
    """``count`` and ``noun`` in agreement: ``plural(1, "member")`` -> ``"1 member"``,
    ``plural(3, "member")`` -> ``"3 members"`` (``nouns``: the plural when not noun + "s";
    ``thousands``: ``1,000``)."""
    number = f"{count:,}" if thousands else f"{count}"
    return f"{number} {noun if count == 1 else (nouns or noun + 's')}"


def printable(text: str) -> str:
    """``text`` with every character that is not printable (newlines, tabs, escape codes,
    Unicode line separators and direction overrides) escaped as repr writes it (``\\n``,
    ``\\x1b``, ``\\u202e``): a name from outside (a file name, a value) can neither end
    a line and forge the next nor restyle the terminal. Every line the project writes for
    people passes through here (this logger's lines, the command line's own)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class OneLine(logging.Formatter):
    """A record's message on one line, what is not printable escaped (:func:`printable`): a
    logged name holding a newline cannot forge the next line."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class Terminal(logging.Handler):
    """A member's line to stdout; the driver's to stderr or ``display`` as ``[committee] ...``."""

    def __init__(self):
        super().__init__()
        self.setFormatter(OneLine())
        self.display = None  # a progress.Display while the driver shows one

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if getattr(record, "member", False):
                stream = sys.stdout
            elif self.display is not None:
                self.display.message(f"[committee] {line}")
                return
            else:
                stream, line = sys.stderr, f"[committee] {line}"
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own way: report, never raise
            self.handleError(record)


class Forward(logging.Handler):
    """Passes each line to ``send`` (a Ray Train worker: to the driver's display queue)."""

    def __init__(self, send: Callable[[str], None]):
        super().__init__()
        self.setFormatter(OneLine())
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(self.format(record))
        except Exception:  # noqa: BLE001
            self.handleError(record)


@contextlib.contextmanager
def forwarding(send: Callable[[str], None] | None):
    """Also pass every line to ``send`` for the block (None: nothing more)."""
    handler = None if send is None else Forward(send)
    if handler is not None:
        logger.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)


TERMINAL = Terminal()


def setup() -> None:
    """Send the ``committee`` logger's lines to :data:`TERMINAL` at INFO (idempotent).

    Called by the entry points (the command line, :func:`committee.app.run.run`, a Ray Train
    worker), not on import: importing the package changes no logging of the process."""
    if TERMINAL not in logger.handlers:
        logger.addHandler(TERMINAL)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the root logger's handlers (a notebook's) would repeat each line
