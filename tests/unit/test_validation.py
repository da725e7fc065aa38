"""The declared option tables (committee.validation): their messages, and that each table and
the command line agree with the options dataclasses. No Ray, no data."""

from __future__ import annotations

import argparse
import dataclasses
import math
from types import SimpleNamespace

import pytest

from committee.app import cli
from committee.app import options as job
from committee.members import spec as members
from committee.validation import Boolean, Interval, Options, argument_type, check, constraint_of

TABLES = [
    (job.RunOptions, job.RUN_CONSTRAINTS),
    (job.TuneOptions, job.TUNE_CONSTRAINTS),
    (job.PredictOptions, job.PREDICT_CONSTRAINTS),
    (members.MemberSpec, members.SPEC_CONSTRAINTS),
]


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != "help"}


@pytest.mark.parametrize("cls, table", TABLES, ids=lambda x: getattr(x, "__name__", ""))
def test_each_table_names_fields_of_its_dataclass(cls, table):
    assert set(table) <= {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    "constraint, value, message",
    [
        (Interval(int, 1, None, closed="left"), 0, "--x 0 must be >= 1"),
        (Interval(int, 1, None, closed="left"), 2.0, "--x 2.0 must be an integer >= 1"),
        (Interval(int, 1, None, closed="left"), True, "--x True must be an integer >= 1"),
        (Interval(int, 10, 60_000), 5, "--x 5 must lie in 10..60000"),
        (Interval(int, 10, 60_000), "5", "--x '5' must be an integer in 10..60000"),
        (Interval(float, 0, None, closed="neither"), -5.0, "--x -5.0 must be > 0"),
        (Interval(float, 0, None, closed="neither"), math.nan, "--x nan must be > 0"),
        (
            Interval(float, 0, math.inf, closed="neither", noun="a finite number"),
            math.inf,
            "--x inf must be a finite number > 0",
        ),
        (
            Interval(float, 0, 0.5, closed="left", noun="a number"),
            0.5,
            "--x 0.5 must be a number in [0, 0.5)",
        ),
        (Interval(float, 0, 1), 1.5, "--x 1.5 must lie in [0, 1]"),
        (Interval(int, 0, None, closed="neither"), -1, "--x -1 must be > 0"),
        (Interval(float, None, 1, closed="neither"), 2, "--x 2 must be < 1"),
        (Boolean(), 1, "--x 1 must be true or false"),
        (Options(("asha", "fifo")), "pbt", "--x 'pbt' is unknown; expected one of asha, fifo"),
        (Options(lambda: {"a": 1, "b": 2}), ["a"], "--x ['a'] is unknown; expected one of a, b"),
    ],
)
def test_a_broken_constraint_names_the_option_the_value_and_what_was_expected(
    constraint, value, message
):
    with pytest.raises(ValueError) as raised:
        check(SimpleNamespace(x=value), {"x": constraint})
    assert str(raised.value) == message


def test_none_is_allowed_only_where_declared_and_checks_run_after_the_table():
    calls = []
    table = {"a": [None, Interval(int, 1, None, closed="left")], "b": Options(("x",))}
    check(SimpleNamespace(a=None, b="x"), table, [calls.append])
    assert len(calls) == 1
    with pytest.raises(ValueError, match="--a None must be an integer >= 1"):
        check(SimpleNamespace(a=None), {"a": Interval(int, 1, None, closed="left")})
    with pytest.raises(ValueError, match="--b 'y' is unknown"):
        check(SimpleNamespace(a=1, b="y"), table, [calls.append])
    assert len(calls) == 1  # the checks run only once the table has passed


def test_accepted_values_pass():
    check(
        SimpleNamespace(n=1, f=0.5, i=3, s="fifo"),
        {
            "n": Interval(int, 1, None, closed="left"),
            "f": Interval(float, 0, 1),
            "i": Interval(float, 0, None, closed="neither"),
            "s": Options(("asha", "fifo")),
        },
    )


@pytest.mark.parametrize(
    "interval, text, message",
    [
        (
            Interval(int, 0, None, closed="neither"),
            "ten",
            "'ten' is not an integer; expected an integer > 0",
        ),
        (Interval(int, 0, None, closed="neither"), "-3", "-3 must be > 0"),
        (
            Interval(float, 0, math.inf, closed="neither", noun="a finite number"),
            "fast",
            "'fast' is not a number; expected a number > 0",
        ),
        (
            Interval(float, 0, math.inf, closed="neither", noun="a finite number"),
            "0",
            "0 must be a finite number > 0",
        ),
        (
            Interval(float, 0, math.inf, closed="left", noun="a finite number"),
            "inf",
            "inf must be a finite number >= 0",
        ),
    ],
)
def test_argument_types_speak_argparse(interval, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        argument_type(interval)(text)
    assert str(raised.value) == message
    assert argument_type(Interval(int, 0, None, closed="neither"))("7") == 7


def test_every_argument_of_run_tune_and_predict_is_a_field_of_its_options():
    subparsers = next(
        a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    for command, cls in (
        ("run", job.RunOptions),
        ("tune", job.TuneOptions),
        ("predict", job.PredictOptions),
    ):
        assert _dests(subparsers[command]) <= {f.name for f in dataclasses.fields(cls)}, command


def test_options_from_args_take_every_argument_and_keep_other_defaults():
    args = cli.build_parser().parse_args(
        ["tune", "--epochs", "3", "--max-failures", "2", "--scheduler", "fifo", "--verbose"]
    )
    options = cli.options_from_args(args)
    assert type(options) is job.TuneOptions
    assert (
        options.epochs,
        options.max_failures,
        options.scheduler,
        options.verbose,
        options.num_samples,
        options.val_fraction,
    ) == (3, 2, "fifo", True, 8, 0.2)
    run = cli.options_from_args(cli.build_parser().parse_args(["run", "--seed", "4"]))
    assert type(run) is job.RunOptions and run == job.RunOptions(seed=4)


NUMERIC_TABLES = TABLES[:3] + [(members.MemberSpec, members.SPEC_CONSTRAINTS)]


@pytest.mark.parametrize("cls, table", NUMERIC_TABLES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_numeric_option_has_a_finite_ceiling(cls, table):
    """A number that passes the table must be one the layers below take: no option may be
    left unbounded above (1e307 minutes overflowed to inf seconds after Ray had started)."""
    for field, entry in table.items():
        constraint = constraint_of(entry)
        if isinstance(constraint, Interval):
            assert constraint.high is not None and math.isfinite(constraint.high), field
            assert not constraint.accepts(math.inf) and not constraint.accepts(math.nan), field


def test_every_numeric_argument_is_checked_by_its_options_table():
    """The command line parses each number with its table's own constraint, so the parser and
    the table refuse the same values (a ceiling added to one is in both)."""
    subparsers = next(
        a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    tables = {**members.SPEC_CONSTRAINTS, **job.RUN_CONSTRAINTS, **job.TUNE_CONSTRAINTS}
    for command, table in (("run", tables), ("tune", tables), ("predict", None)):
        for action in subparsers[command]._actions:
            if action.type is None or action.dest in ("seed", "members", "run_dir"):
                continue
            own = job.PREDICT_CONSTRAINTS if table is None else table
            interval = constraint_of(own[action.dest])
            for value in (interval.low, interval.high):
                if value is None:
                    continue
                too_far = value * 2 + 1 if value == interval.high else value - 1
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type(str(too_far))


@pytest.mark.parametrize(
    "options, message",
    [
        (job.RunOptions(member_minutes=1e307), "--member-minutes 1e+307 must be a finite number"),
        (job.RunOptions(cpus_per_member=1e-9), "must be a number in (0, 1000000], a multiple of"),
        (job.RunOptions(gpus_per_member=0.33333), "a multiple of 0.0001"),
        (job.RunOptions(max_failures=10**30), "--max-failures 1000000000000000000000000000000"),
        (job.TuneOptions(time_budget_s=math.inf), "--time-budget-s inf must be a finite number"),
        (job.TuneOptions(num_samples=10**9), "--num-samples 1000000000 must lie in 1..10000"),
        (job.PredictOptions("r", ["x"], cpus_per_member=0.00001), "a multiple of 0.0001"),
        (job.PredictOptions("r", ["x"], batch_size=2**63), "--batch-size 9223372036854775808"),
    ],
)
def test_options_built_in_code_meet_the_same_ceilings(options, message):
    table = {
        job.RunOptions: job.RUN_CONSTRAINTS,
        job.TuneOptions: {**job.RUN_CONSTRAINTS, **job.TUNE_CONSTRAINTS},
        job.PredictOptions: job.PREDICT_CONSTRAINTS,
    }[type(options)]
    with pytest.raises(ValueError) as raised:
        check(options, table)
    assert message in str(raised.value)


def test_a_step_refuses_what_ray_would_cut_and_keeps_what_it_counts():
    cpus = Interval(float, 0, 8, closed="right", step=0.0001)
    assert all(cpus.accepts(v) for v in (0.0001, 0.3, 0.33, 1, 2.5, 7.9999, 8))
    assert not any(cpus.accepts(v) for v in (0.00005, 0.33333, 1e-9, 8.0001, math.nan))
