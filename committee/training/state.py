"""A member's training state besides its model, and the time-budget arithmetic. No Keras here.

:class:`TrainState` is what a checkpoint's ``state.json`` holds: epoch, metric history,
early-stopping counters, the time budget's plan. :func:`plan_epochs` and :func:`recent_pace`
turn measured epoch times into the number of epochs that fit a budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from committee.log import plural
from committee.members.spec import MAX_EPOCHS, MemberSpec

METRICS = ("loss", "accuracy", "precision", "recall")
FRACTIONS = ("accuracy", "precision", "recall")  # history metrics in [0, 1], val_ ones included
LOSSES = ("loss",)  # history metrics >= 0, val_ ones included
FLOAT32_MAX = 3.4028234663852886e38  # Keras computes every metric in float32 at most


@dataclass
class TrainState:
    """Everything besides the model needed to continue training exactly where it stopped."""

    epoch: int = 0  # epochs completed so far (the next epoch's index)
    history: dict[str, list[float]] = field(default_factory=dict)
    es_wait: int = 0
    es_best: float | None = None
    stopped_early: bool = False
    resumed_at: list[int] = field(default_factory=list)  # epoch counts at each resumption
    started_at: float | None = None  # wall clock of the first epoch's start
    finished_at: float | None = None
    epochs_planned: int | None = None  # set after each epoch when a time budget applies
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's duration, validation in
    diverged: dict[str, float] | None = None  # epoch, learning_rate, loss of a non-finite epoch
    precision: str | None = None  # the dtype policy actually trained with (effective_precision)
    device: dict[str, Any] | None = None  # cpu model and GPU names where it last trained

    @classmethod
    def from_dict(cls, data: dict[str, Any], max_epochs: int = MAX_EPOCHS) -> TrainState:
        """The state saved as ``data`` (a checkpoint's state.json, untrusted): every field is
        checked against its type and range (:func:`range_problem`; ``max_epochs``: the
        member's spec's epochs), so a damaged file raises ValueError naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"state is {type(data).__name__}; expected a JSON object")
        unknown = sorted(set(data) - set(_STATE_CHECKS))
        if unknown:
            raise ValueError(f"state field {unknown[0]!r} is unknown")
        for key, value in data.items():
            if not _STATE_CHECKS[key](value):
                raise ValueError(
                    f"state field {key!r} has {value!r:.80}; expected {_STATE_CHECKS[key].__doc__}"
                )
        state = cls(**data)
        problem = range_problem(state, max_epochs)
        if problem is not None:
            raise ValueError(f"state {problem}")
        return state

    def total_epochs(self, spec: MemberSpec) -> int:
        """The epochs this run trains in all: the budget's plan, else the spec's ceiling."""
        return self.epochs_planned or spec.epochs


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _count(v) -> bool:
    """an integer >= 0"""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _count_or_none(v) -> bool:
    """an integer >= 0 or null"""
    return v is None or _count(v)


def _time_or_none(v) -> bool:
    """a number (seconds) or null"""
    return v is None or (_number(v) and math.isfinite(v))


def _flag(v) -> bool:
    """true or false"""
    return isinstance(v, bool)


def _counts(v) -> bool:
    """a list of integers >= 0"""
    return isinstance(v, list) and all(_count(x) for x in v)


def _durations(v) -> bool:
    """a list of numbers (seconds)"""
    return isinstance(v, list) and all(_number(x) and math.isfinite(x) for x in v)


def _history(v) -> bool:
    """an object of metric name -> list of numbers"""
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, list) and all(_number(y) for y in x)
        for k, x in v.items()
    )


def _object_or_none(v) -> bool:
    """an object or null"""
    return v is None or isinstance(v, dict)


def _text_or_none(v) -> bool:
    """a string or null"""
    return v is None or isinstance(v, str)


def _best(v) -> bool:
    """a number or null"""
    return v is None or _number(v)


_STATE_CHECKS = {
    "epoch": _count,
    "history": _history,
    "es_wait": _count,
    "es_best": _best,
    "stopped_early": _flag,
    "resumed_at": _counts,
    "started_at": _time_or_none,
    "finished_at": _time_or_none,
    "epochs_planned": _count_or_none,
    "epoch_seconds": _durations,
    "diverged": _object_or_none,
    "precision": _text_or_none,
    "device": _object_or_none,
}


def range_problem(state: TrainState, max_epochs: int) -> str | None:
    """Why ``state`` (its types checked) cannot be what training ``max_epochs`` epochs at most
    wrote, or None: its counts within 0..``max_epochs`` (resumptions and the early-stopping
    wait within its epochs), at most one history value per epoch, every value finite and
    within float32, accuracies / precisions / recalls in [0, 1], losses >= 0. The one place
    a state's ranges are checked: a checkpoint's and a finished member's record alike."""
    for key, value in (("epoch", state.epoch), ("epochs_planned", state.epochs_planned)):
        if value is not None and value > max_epochs:
            return f"field {key!r} is {value}; expected at most the member's {max_epochs} epochs"
    for key, values in (("es_wait", [state.es_wait]), ("resumed_at", state.resumed_at)):
        if any(v > state.epoch for v in values):
            return f"field {key!r} has {max(values)}; expected at most its {state.epoch} epochs"
    for key, values in sorted(state.history.items()):
        metric = key.removeprefix("val_")
        low, high = (
            (0.0, 1.0)
            if metric in FRACTIONS
            else (0.0, FLOAT32_MAX)
            if metric in LOSSES
            else (-FLOAT32_MAX, FLOAT32_MAX)
        )
        if len(values) > state.epoch:
            return (
                f"history {key!r} has {len(values)} values; expected at most one per "
                f"epoch ({state.epoch})"
            )
        bad = next((v for v in values if not (math.isfinite(v) and low <= v <= high)), None)
        if bad is not None:
            return f"history {key!r} has {bad!r}; expected finite numbers in [{low:g}, {high:g}]"
    if state.es_best is not None and not (math.isfinite(state.es_best)):
        return f"field 'es_best' is {state.es_best!r}; expected a finite number or null"
    return None


def plan_epochs(
    seconds_so_far: float,
    epochs_done: int,
    budget_s: float,
    max_epochs: int,
    reserve_s: float = 0.0,
    pace_s: float | None = None,
) -> int:
    """How many epochs in all fit ``budget_s`` seconds, less ``reserve_s`` kept for the
    prediction after training, when ``epochs_done`` epochs took ``seconds_so_far`` and each
    further one takes ``pace_s`` (default: the mean of those done so far).

    Never fewer than the epochs already done (nor than one), never more than ``max_epochs``.
    The pace is measured while the members share the machine (:func:`recent_pace`).
    """
    if epochs_done < 1 or not seconds_so_far > 0:
        raise ValueError(
            f"pace needs >= 1 epoch done in > 0 s, got {plural(epochs_done, 'epoch')} in "
            f"{seconds_so_far!r} s"
        )
    if pace_s is None:
        pace_s = seconds_so_far / epochs_done
    if not pace_s > 0:
        raise ValueError(f"pace {pace_s!r} s per epoch must be > 0")
    fit = epochs_done + int((budget_s - reserve_s - seconds_so_far) // pace_s)
    return max(1, epochs_done, min(max_epochs, fit))


def recent_pace(epoch_seconds: list[float], last: int = 3) -> float:
    """Seconds per epoch from the last ``last`` epochs, leaving out the first epoch (graph
    tracing) once there are others. Shape: ``epoch_seconds`` one duration per epoch run."""
    if not epoch_seconds:
        raise ValueError("recent_pace needs at least one epoch's duration, got none")
    timed = epoch_seconds[1:] or epoch_seconds
    return sum(timed[-last:]) / len(timed[-last:])
