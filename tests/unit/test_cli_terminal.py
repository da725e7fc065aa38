"""The command line's own manners: --version, no silent abbreviations of options, and counts
in agreement with their nouns."""

from __future__ import annotations

import argparse

import pytest

import committee
from committee.app import cli
from committee.log import plural


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"committee {committee.__version__}\n"
    assert cli.package_version() == committee.__version__  # pyproject's and the source's


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_takes_abbreviations():
    parsers = list(_parsers(cli.build_parser()))
    assert len(parsers) == 7  # committee, run, tune, report, predict, export, submit
    assert all(not p.allow_abbrev for p in parsers)


@pytest.mark.parametrize(
    "argv, abbreviated",
    [
        (["run", "--epoch", "2"], "--epoch"),
        (["run", "--member", "model1"], "--member"),
        (["tune", "--num-sample", "2"], "--num-sample"),
        (["predict", "runs/x", "a.npy", "--rul", "mean"], "--rul"),
        (["export", "runs/x", "--overwr"], "--overwr"),
    ],
)
def test_an_abbreviated_option_is_an_error(argv, abbreviated, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"unrecognized arguments: {abbreviated}" in err, err


def test_full_option_names_still_parse():
    args = cli.build_parser().parse_args(["run", "--epochs", "2", "--members", "model1"])
    assert (args.epochs, args.members) == (2, ["model1"])


@pytest.mark.parametrize(
    "count, noun, expected",
    [
        (1, "member", "1 member"),
        (3, "member", "3 members"),
        (0, "epoch", "0 epochs"),
        (1, "epoch", "1 epoch"),
        (2, "temporary file", "2 temporary files"),
        (1, "body", "1 body"),
        (2, "body", "2 bodies"),
    ],
)
def test_plural(count, noun, expected):
    nouns = "bodies" if noun == "body" else None
    assert plural(count, noun, nouns) == expected


def test_plural_thousands():
    assert plural(10_000, "image", thousands=True) == "10,000 images"


def test_counts_in_messages_agree():
    import numpy as np
    import pyarrow as pa

    from committee.app.predict import summary
    from committee.ensemble.scoring import out_of_fold_weighted

    assert summary(pa.table({"class_name": ["Bag"]})) == "1 image: Bag 1"
    assert summary(pa.table({"class_name": ["Bag", "Bag"]})) == "2 images: Bag 2"
    with pytest.raises(ValueError, match="^1 validation image cannot be split"):
        out_of_fold_weighted([np.full((1, 10), 0.1)], np.array([3]))


def test_a_search_of_one_configuration_says_so():
    from committee.report.render import search_markdown

    meta = {"name": "s", "num_samples": 1, "scheduler": "fifo", "n_val": 10}
    assert "1 configuration per member (fifo)" in search_markdown({}, {}, meta)
