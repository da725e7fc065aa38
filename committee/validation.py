"""Options checked from a table declared once per options dataclass.

The idea of scikit-learn's ``_parameter_constraints`` / ``validate_parameter_constraints``, in
this project's words. A table maps a field of an options dataclass to what it may hold:

- :class:`Interval`: a number of a type between bounds, e.g. ``Interval(int, 1, None,
  closed="left")``, an integer >= 1; with ``step``, a multiple of it (Ray's 0.0001 of a CPU);
- :class:`Options`: one of a set of values, e.g. ``Options(("asha", "fifo"))``;
- :class:`Boolean`: True or False;
- ``[None, constraint]``: the same, or None (the option left out).

:func:`check` raises ValueError for the first field, in table order, whose value breaks its
constraint: one line that names the option as the user typed it (``--max-failures``), the bad
value and what was expected (``--max-failures -1 must be >= 0``). Checks that are not simple
constraints (across fields, or with their own explanation) are small named functions of the
options, listed beside the table and run after it.

:func:`argument_type` turns an :class:`Interval` into an argparse ``type=``, so the command
line refuses the same values while parsing, in argparse's wording (``argument --epochs: 0 must
be > 0``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

CLOSED = ("both", "left", "right", "neither")


class Interval:
    """A number of ``type`` between ``low`` and ``high`` (None: no bound), the ends included
    as ``closed`` says ("both", "left", "right", "neither").

    ``type`` int takes integers, float takes integers and floats; neither takes a bool, and
    NaN lies in no interval. ``high=math.inf`` with its end open asks for a finite number.
    ``noun`` ("a number", "an integer", "a finite number") is said before the bounds in every
    message; without it a message names the type only when the value is of another type.
    ``step``: the value must also be a whole multiple of it (a float within rounding)."""

    def __init__(
        self,
        type: type,
        low: float | None,
        high: float | None,
        closed: str = "both",
        noun: str | None = None,
        step: float | None = None,
    ):
        if type not in (int, float):
            raise TypeError(f"Interval type {type!r}; expected int or float")
        if closed not in CLOSED:
            raise ValueError(f"Interval closed {closed!r}; expected one of {', '.join(CLOSED)}")
        self.type, self.low, self.high, self.closed, self.noun = type, low, high, closed, noun
        self.step = step

    @property
    def type_noun(self) -> str:
        return "an integer" if self.type is int else "a number"

    def is_type(self, value: Any) -> bool:
        types = (int,) if self.type is int else (int, float)
        return isinstance(value, types) and not isinstance(value, bool)

    def accepts(self, value: Any) -> bool:
        if not self.is_type(value):
            return False
        if self.low is not None and not (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        ):
            return False
        if self.high is not None and not (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        ):
            return False
        if self.step is not None and math.isfinite(value):
            steps = value / self.step
            if abs(steps - round(steps)) > 1e-6 * max(1.0, abs(steps)):
                return False
        return value == value  # NaN, even where no bound was given

    def bounds(self) -> str:
        """``"> 0"``, ``">= 1"``, ``"<= 1"``; with both ends finite, integers ``"in 10..60000"``
        (ends included) or ``"in [10, 60000)"``, numbers ``"in [0, 0.5)"``. An infinite upper
        end says nothing (see ``noun``)."""
        high = None if self.high == math.inf else self.high
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        step = "" if self.step is None else f", a multiple of {self.step:g}"
        if self.low is not None and high is not None:
            if self.type is int and left and right:
                return f"in {self.low}..{high}{step}"
            return f"in {'[' if left else '('}{self.low}, {high}{']' if right else ')'}{step}"
        if self.low is not None:
            return f"{'>=' if left else '>'} {self.low}{step}"
        return "" if high is None else f"{'<=' if right else '<'} {high}{step}"

    def expected(self, value: Any) -> str:
        """What follows "must": ``"be >= 1"``, ``"lie in 10..60000"``, ``"be a number > 0"``,
        ``"be a number in [0, 0.5)"``."""
        noun = self.noun or (None if self.is_type(value) else self.type_noun)
        bounds = self.bounds()
        if noun is None and bounds.startswith("in "):
            return f"lie {bounds}"
        if not bounds:  # no bounds: the type is all there is to say
            return f"be {noun or self.type_noun}"
        return f"be {noun} {bounds}" if noun else f"be {bounds}"

    def describe(self, value: Any) -> str:
        return f"{shown(value)} must {self.expected(value)}"


class Options:
    """One of ``values``: a sequence, a mapping (its keys), or a function returning either,
    for values kept in a module that is too heavy to import before they are needed."""

    def __init__(self, values: Iterable | Callable[[], Iterable]):
        self._values = values

    def values(self) -> tuple:
        values = self._values() if callable(self._values) else self._values
        return tuple(values)

    def accepts(self, value: Any) -> bool:
        return value in self.values()

    def describe(self, value: Any) -> str:
        return f"{value!r} is unknown; expected one of {', '.join(map(str, self.values()))}"


class Boolean:
    """True or False (not 0 or 1), or one of the strings ``also``."""

    def __init__(self, also: tuple[str, ...] = ()):
        self.also = tuple(also)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool) or (isinstance(value, str) and value in self.also)

    def describe(self, value: Any) -> str:
        if not self.also:
            return f"{value!r} must be true or false"
        return f"{value!r} must be true, false or {', '.join(map(repr, self.also))}"


Constraint = Interval | Options | Boolean


def shown(value: Any) -> str:
    """A value as a message quotes it: numbers as written (``5``, ``-5.0``, ``nan``), anything
    else as its repr (``'fast'``, ``True``, ``None``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return repr(value)


def flag(field: str) -> str:
    """The command-line option of a field: ``max_failures`` -> ``--max-failures``."""
    return "--" + field.replace("_", "-")


def constraint_of(entry: Constraint | list) -> Constraint:
    """The constraint of a table entry (``[None, constraint]``'s second)."""
    return _constraint(entry)[1]


def _constraint(entry: Constraint | list) -> tuple[bool, Constraint]:
    """``(None allowed, the constraint)`` of a table entry."""
    if isinstance(entry, list):
        rest = [c for c in entry if c is not None]
        if len(rest) != 1 or len(entry) != 2:
            raise TypeError(f"table entry {entry!r}; expected a constraint or [None, constraint]")
        return True, rest[0]
    return False, entry


def check(
    options: Any,
    constraints: Mapping[str, Constraint | list],
    checks: Sequence[Callable[[Any], Any]] = (),
    name: Callable[[str], str] = flag,
) -> None:
    """Check each field of ``options`` named in ``constraints``, in table order, then call
    each of ``checks`` with ``options``. Raises ValueError ``"<name(field)> <value> <what was
    expected>"`` for the first field that breaks its constraint (the checks raise their own)."""
    for field, entry in constraints.items():
        value = getattr(options, field)
        none_allowed, constraint = _constraint(entry)
        if value is None and none_allowed:
            continue
        if not constraint.accepts(value):
            raise ValueError(f"{name(field)} {constraint.describe(value)}")
    for extra in checks:
        extra(options)


def argument_type(interval: Interval) -> Callable[[str], int | float]:
    """An argparse ``type=`` that parses a number and refuses one outside ``interval``:
    ``'ten' is not an integer; expected an integer > 0``, ``0 must be > 0`` (a float as it
    was typed: ``0 must be a finite number > 0``, not ``0.0``)."""

    def parse(text: str) -> int | float:
        try:
            value = interval.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {interval.type_noun}; expected {interval.type_noun} "
                f"{interval.bounds()}"
            ) from None
        if not interval.accepts(value):
            raise argparse.ArgumentTypeError(
                f"{value if interval.type is int else text} must {interval.expected(value)}"
            )
        return value

    return parse
