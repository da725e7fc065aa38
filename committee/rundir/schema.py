"""The structure of results.json, checked before ``committee report`` trusts any of it.

The tables below (pydantic models) declare every field that :mod:`committee.report.render` reads, as
:func:`committee.app.run.run` writes it; fields nobody reads (``versions``,
``classification_report``, timings) are let through unchecked. :func:`check_results` adds the
checks that span fields (the same members everywhere, pairs of known members) and turns the
first problem into one line: the file, the field, what was found and what was expected.

Names that become parts of file names (members) or lines of report.md (rules, run name) must be
plain: letters, digits, ``_``, ``-`` and ``.``, not starting with ``.``, at most 255 bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from committee.data.fashion_mnist import NUM_CLASSES
from committee.ensemble.diagnostics import N_BINS
from committee.members.seeds import MAX_SEED
from committee.rundir import door
from committee.rundir.folder import RunFolderError

MAX_RESULTS_BYTES = 64 << 20  # a real results.json is well under 1 MB
MAX_MEMBERS = 32  # a figure and a report row each; presets have at most 6
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain_name(value: str) -> str:
    if not _PLAIN_NAME.fullmatch(value) or len(value.encode()) > 255:
        raise ValueError(
            "a plain name (letters, digits, '_', '-', '.'; not starting with '.'; "
            "at most 255 bytes)"
        )
    return value


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("text without control characters (no newlines)")
    return value


Name = Annotated[str, AfterValidator(_plain_name)]
Line = Annotated[str, AfterValidator(_one_line)]
# Counts stay exact as float64, in which numpy and matplotlib compute: a larger one (the schema
# had no bound, and JSON none) overflows while the report is drawn.
MAX_COUNT = 2**53
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Number = Annotated[float, Field(allow_inf_nan=False)]  # a score, a time: finite
# What each score can be (an out-of-range one is damage, not a figure to draw).
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]  # accuracy, F1, a weight
Gain = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]  # a difference of accuracies
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # seconds, log loss, Brier


def _not_infinite(value: float) -> float:
    if math.isinf(value):
        raise ValueError("a finite number or NaN")
    return value


# A pair's diversity: NaN where it is undefined (Yule's Q of two members that never err).
Pairwise = Annotated[float, AfterValidator(_not_infinite)]
ClassCounts = Annotated[list[Count], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]
MatrixRow = Annotated[list[Count], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]
Matrix = Annotated[list[MatrixRow], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]
BinValues = Annotated[list[float | None], Field(min_length=N_BINS, max_length=N_BINS)]
BinCounts = Annotated[list[Count], Field(min_length=N_BINS, max_length=N_BINS)]


def _by_member(value_type, min_length: int = 1):
    """A dict of member (or rule) name -> ``value_type``, 1..MAX_MEMBERS entries."""
    return Annotated[dict[Name, value_type], Field(min_length=min_length, max_length=MAX_MEMBERS)]


class _Table(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class Run(_Table):
    name: Line
    preset: Line
    members: Annotated[list[Name], Field(min_length=1, max_length=MAX_MEMBERS)]
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    placement: Line
    wall_s: NonNegative


class ConfigMember(_Table):
    name: Name
    epochs: Annotated[int, Field(gt=0, le=MAX_COUNT)]


class Config(_Table):
    members: Annotated[list[ConfigMember], Field(min_length=1, max_length=MAX_MEMBERS)]


class CountsBySplit(_Table):
    train: ClassCounts
    validation: ClassCounts | None = None  # written since the split's own counts are kept
    test: ClassCounts


class Data(_Table):
    n_train: Count
    n_val: Count
    n_test: Count
    split: Line
    class_counts: CountsBySplit


class Device(_Table):
    cpu: Line
    gpus: Annotated[list[Line], Field(max_length=64)]


class Training(_Table):
    epochs_run: Count
    stopped_early: bool
    epochs_planned: Count | None = None
    precision: Line | None = None  # written since the dtype policy used is recorded
    device: Device | None = None
    history: Annotated[dict[Line, list[Number]], Field(max_length=64)]
    train_s: NonNegative | None = None


class Scores(_Table):
    accuracy: Fraction
    precision_macro: Fraction
    recall_macro: Fraction
    f1_macro: Fraction
    log_loss: NonNegative
    val_accuracy: Fraction | None = None


class Calibration(_Table):
    nll: NonNegative
    brier: NonNegative
    ece: Fraction


class Diversity(_Table):
    disagreement: Pairwise
    q_statistic: Pairwise
    double_fault: Pairwise


class Bins(_Table):
    confidence: BinValues
    accuracy: BinValues
    count: BinCounts


class Code(_Table):
    git_commit: Line | None = None  # None: not run from a git checkout
    git_dirty: bool | None = None


class Machine(_Table):
    cpu: Line
    platform: Line


class Results(_Table):
    run: Run
    config: Config
    data: Data
    training: _by_member(Training)
    members: _by_member(Scores)
    committee: _by_member(Scores)
    best_member: Name
    gain_over_best_member: _by_member(Gain)
    oracle_accuracy: Fraction
    weights: _by_member(Fraction) | None = None
    code: Code | None = None  # absent in results.json written before it was recorded
    machine: Machine | None = None
    calibration: _by_member(Calibration)
    diversity: Annotated[
        dict[Line, Diversity], Field(max_length=MAX_MEMBERS * (MAX_MEMBERS - 1) // 2)
    ]
    reliability: _by_member(Bins)
    confusion_matrix: _by_member(Matrix)


# --------------------------------------------------------------------------- a search's


class SearchMeta(_Table):
    name: Line
    num_samples: Count
    scheduler: Line
    n_val: Count


class SearchMember(_Table):
    best_config: Annotated[dict[Line, bool | int | float | Line], Field(max_length=64)]


class SearchScore(_Table):
    accuracy: Fraction
    val_accuracy: Fraction | None = None


class SearchScores(_Table):
    members: _by_member(SearchScore, min_length=0)
    committee: _by_member(SearchScore, min_length=0)


class SearchResults(_Table):
    """The results.json of ``committee tune`` (render.write_search), as far as its report
    reads it."""

    search: SearchMeta
    members: _by_member(SearchMember)
    default: SearchScores | None = None
    tuned: SearchScores | None = None


# --------------------------------------------------------------------------- checking


def read_results(path: str | Path) -> dict:
    """Read and check results.json; return it as a plain dict.

    Raises :class:`RunFolderError` (one line) when it cannot be read, is larger than
    ``MAX_RESULTS_BYTES``, is not JSON or fails :func:`check_results`.
    """
    obj = _read_json(Path(path))
    check_results(obj, str(path))
    return obj


def read_search_results(path: str | Path) -> dict:
    """Read and check a search's results.json (:class:`SearchResults`); return it as a plain
    dict. Raises :class:`RunFolderError` (one line naming the file and field)."""
    obj = _read_json(Path(path))
    try:
        SearchResults.model_validate(obj)
    except ValidationError as exc:
        raise RunFolderError(f"{path}: {_describe(exc.errors()[0])}") from None
    return obj


def _read_json(path: Path) -> Any:
    """The JSON data of results.json; one-line :class:`RunFolderError` when it cannot be read,
    is too large or is not JSON."""
    try:
        raw = door.read_bytes(path, MAX_RESULTS_BYTES)  # a FIFO is refused, not waited on
    except OSError as exc:
        raise RunFolderError(
            f"{path}: cannot be read ({exc.strerror or exc}); expected the "
            f"results.json of a finished run"
        ) from None
    if len(raw) > MAX_RESULTS_BYTES:
        raise RunFolderError(
            f"{path}: larger than {MAX_RESULTS_BYTES:,} bytes; expected the "
            f"results.json of a finished run (well under 1 MB)"
        )
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RunFolderError(
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column "
            f"{exc.colno}); expected the results.json of a finished run"
        ) from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, huge integers, deep nesting
        raise RunFolderError(
            f"{path}: not valid JSON ({type(exc).__name__}: "
            f"{_short(str(exc))}); expected the results.json of a finished "
            f"run"
        ) from None
    return obj


def check_results(obj: Any, source: str) -> Results:
    """Check a parsed results.json against the tables above and across fields.

    ``source`` names the file in messages. Returns the checked :class:`Results`; raises
    :class:`RunFolderError` with a one-line message naming ``source`` and the field.
    """
    try:
        results = Results.model_validate(obj)
    except ValidationError as exc:
        raise RunFolderError(f"{source}: {_describe(exc.errors()[0])}") from None
    problem = next(_cross_problems(results), None)
    if problem:
        raise RunFolderError(f"{source}: {problem}")
    return results


def _cross_problems(r: Results) -> Iterator[str]:
    """Each way the fields disagree about which members and rules there are, as a message."""
    members = set(r.members)
    scored = members | {f"committee_{rule}" for rule in r.committee}
    pairs = {f"{a}|{b}" for a, b in combinations(r.members, 2)}
    same_keys = [
        ("run.members", set(r.run.members), members, "the keys of field 'members'"),
        ("training", set(r.training), members, "the keys of field 'members'"),
        (
            "gain_over_best_member",
            set(r.gain_over_best_member),
            set(r.committee),
            "the keys of field 'committee'",
        ),
        ("weights", set(r.weights or members), members, "the keys of field 'members'"),
        *(
            (field, set(getattr(r, field)), scored, "the members and committee_<rule>")
            for field in ("calibration", "reliability", "confusion_matrix")
        ),
        ("diversity", set(r.diversity), pairs, "the pairs of field 'members'"),
    ]
    for field, found, expected, what in same_keys:
        if found != expected:
            yield f"field {field!r} has keys {sorted(found)}; expected {what}: {sorted(expected)}"
    if r.best_member not in members:
        yield f"field 'best_member' has {r.best_member!r}; expected one of {sorted(members)}"
    unspecified = members - {spec.name for spec in r.config.members}
    if unspecified:
        yield (
            f"field 'config.members' has no spec for {sorted(unspecified)}; expected one for "
            f"each key of field 'members'"
        )


def _describe(error: dict) -> str:
    """One pydantic error as "field 'a.b' has <value>; expected <what>"."""
    loc = error["loc"]
    expected = error["msg"]
    for prefix in ("Input should be ", "Value error, "):
        expected = expected.removeprefix(prefix)
    if loc and loc[-1] == "[key]":  # (..., "training", <the bad key>, "[key]")
        return (
            f"field '{_field(loc[:-2])}' has key {_short(repr(loc[-2]))}; expected each key "
            f"to be {expected}"
        )
    if error["type"] == "missing":
        return (
            f"field '{_field(loc)}' is missing; expected it, as in the results.json a "
            f"finished run writes"
        )
    return f"field '{_field(loc)}' has {_short(repr(error['input']))}; expected {expected}"


def _field(loc: tuple) -> str:
    """A pydantic location as a field path: ``training.model1.history``, ``x[3]``,
    ``members['a b']``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{_short(repr(part))}]"
    return text or "(the top level)"


def _short(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
