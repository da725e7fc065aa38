"""`committee report RUN_DIR` treats the run folder as untrusted: every file is checked before
anything is drawn, and each problem is one line naming the file and field, exit status 2.

The run folder is synthesised without Ray: scoring.score_committee on random probabilities
plus the other fields job.run writes."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import no_hang

from committee.app import cli
from committee.data.fashion_mnist import NUM_CLASSES
from committee.ensemble import scoring
from committee.report import render as report
from committee.rundir import folder as runfolder
from committee.rundir.finished_run import load_committee

MEMBERS = ("model1", "model2")


N_TEST, N_VAL = 200, 100


def _probas(rng, n):
    return rng.dirichlet(np.ones(NUM_CLASSES), size=n).astype(np.float32)


def synthetic_results(members=MEMBERS, seed: int = 0) -> dict:
    """A results.json as job.run writes it, for random members."""
    rng = np.random.default_rng(seed)
    y_test, y_val = rng.integers(0, NUM_CLASSES, N_TEST), rng.integers(0, NUM_CLASSES, N_VAL)
    scores, _ = scoring.score_committee(
        {m: _probas(rng, N_TEST) for m in members},
        y_test,
        {m: _probas(rng, N_VAL) for m in members},
        y_val,
    )
    history = {
        k: [0.5, 0.6]
        for k in (
            "loss",
            "accuracy",
            "precision",
            "recall",
            "val_loss",
            "val_accuracy",
            "val_precision",
            "val_recall",
        )
    }
    return {
        "run": {
            "name": "synthetic",
            "preset": "seed",
            "members": list(members),
            "seed": seed,
            "placement": "1 CPU",
            "mode": "new",
            "started_at": "2026-01-01T00:00:00+00:00",
            "wall_s": 12.5,
        },
        "config": {
            "options": {},
            "member_minutes": None,
            "members": [{"name": m, "epochs": 2} for m in members],
        },
        "versions": {"python": "3.11"},
        "data": {
            "source": "synthetic",
            "sha256": {},
            "split": "tail",
            "val_fraction": 0.2,
            "limit_train": None,
            "n_train": 800,
            "n_val": N_VAL,
            "n_test": N_TEST,
            "class_counts": {
                "train": [80] * 10,
                "validation": [10] * 10,
                "test": np.bincount(y_test, minlength=10).tolist(),
            },
        },
        "training": {
            m: {"epochs_run": 2, "stopped_early": False, "epochs_planned": None, "history": history}
            for m in members
        },
        **scores,
    }


@pytest.fixture
def run_dir(tmp_path) -> Path:
    folder = tmp_path / "runs" / "x"
    runfolder.write_json(folder / runfolder.RESULTS, synthetic_results())
    rng = np.random.default_rng(1)
    runfolder.write_npz(
        folder / report.SAMPLES,
        images=rng.integers(0, 256, (75, 28, 28), dtype=np.uint8),
        labels=rng.integers(0, 10, 75).astype(np.uint8),
    )
    return folder


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _report_fails(run_dir: Path, capsys, *expected: str) -> str:
    """Run `committee report`; assert exit 2, one line naming each ``expected``, and that the
    folder is exactly as it was."""
    before = _snapshot(run_dir)
    assert cli.main(["report", str(run_dir)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("committee: error: ") and captured.out == ""
    for words in expected:
        assert words in err, err
    assert _snapshot(run_dir) == before  # nothing redrawn, nothing added
    return err


def _edit_results(run_dir: Path, edit) -> None:
    path = run_dir / runfolder.RESULTS
    results = json.loads(path.read_text())
    edit(results)
    path.write_text(json.dumps(results))


def test_a_valid_folder_renders_three_class_count_panels(run_dir, capsys):
    assert cli.main(["report", str(run_dir)]) == 0
    written = capsys.readouterr().out.split()
    names = {Path(p).name for p in written}
    assert {
        "curves_model1.png",
        "curves_model2.png",
        "confusion_matrices.png",
        "diversity.png",
        "reliability.png",
        "class_distribution.png",
        "samples.png",
        "report.md",
    } == names
    assert all(
        Path(p).is_file() and Path(p).resolve().is_relative_to(run_dir.resolve()) for p in written
    )
    assert "committee (mean)" in (run_dir / "report.md").read_text()


def test_an_older_run_without_validation_counts_renders(run_dir, capsys):
    _edit_results(run_dir, lambda r: r["data"]["class_counts"].pop("validation"))
    assert cli.main(["report", str(run_dir)]) == 0


def test_a_member_name_escaping_the_folder_is_refused(run_dir, capsys, tmp_path):
    name = "../../../../" + str(tmp_path / "escaped" / "owned").lstrip("/")

    def add_member(results):
        results["members"][name] = results["members"]["model1"]
        results["training"][name] = results["training"]["model1"]

    _edit_results(run_dir, add_member)
    _report_fails(
        run_dir,
        capsys,
        f"{run_dir / 'results.json'}: field 'training' has key",
        repr(name),
        "plain name",
    )
    assert not (tmp_path / "escaped").exists()


def test_a_member_name_with_a_newline_is_refused(run_dir, capsys):
    _edit_results(
        run_dir, lambda r: r["members"].__setitem__("model1\nevil", r["members"].pop("model1"))
    )
    _report_fails(run_dir, capsys, "results.json: field 'members' has key 'model1\\nevil'")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{}", "results.json: field 'run' is missing"),
        ('{"run": {"name": "x", "preset"', "results.json: not valid JSON"),
        ("", "results.json: not valid JSON"),
        ("[1, 2]", "results.json: field '(the top level)' has [1, 2]"),
    ],
    ids=["empty-object", "truncated", "empty-file", "a-list"],
)
def test_malformed_results_json(run_dir, capsys, text, expected):
    (run_dir / runfolder.RESULTS).write_text(text)
    _report_fails(run_dir, capsys, expected)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda r: r.__setitem__("training", []), "field 'training' has []; expected a valid dict"),
        (lambda r: r.pop("training"), "field 'training' is missing"),
        (lambda r: r["training"].pop("model2"), "field 'training' has keys ['model1']"),
        (
            lambda r: r["data"]["class_counts"].__setitem__("test", [1] * 9),
            "field 'data.class_counts.test' has",
        ),
        (
            lambda r: r["confusion_matrix"]["model1"][0].__setitem__(0, -1),
            "field 'confusion_matrix.model1[0][0]' has -1",
        ),
        (
            lambda r: r["diversity"].__setitem__("model1|ghost", r["diversity"]["model1|model2"]),
            "field 'diversity' has keys",
        ),
        (lambda r: r.__setitem__("best_member", "ghost"), "field 'best_member' has 'ghost'"),
        (lambda r: r["run"].__setitem__("name", "x\n# injected"), "field 'run.name' has"),
    ],
    ids=[
        "training-list",
        "training-missing",
        "member-unlisted",
        "counts-short",
        "negative-count",
        "unknown-pair",
        "unknown-best",
        "run-name-newline",
    ],
)
def test_results_fields_are_checked(run_dir, capsys, edit, expected):
    _edit_results(run_dir, edit)
    _report_fails(run_dir, capsys, "results.json: " + expected)


def test_a_pickle_in_samples_is_refused_before_any_figure_is_redrawn(run_dir, capsys):
    assert cli.main(["report", str(run_dir)]) == 0  # figures exist: a redraw would show
    capsys.readouterr()
    np.savez(
        run_dir / report.SAMPLES,
        images=np.array([{"x": 1}] * 75, dtype=object),
        labels=np.zeros(75, np.uint8),
    )
    _report_fails(run_dir, capsys, "samples.npz: array 'images' is object")


@pytest.mark.parametrize(
    "write, expected",
    [
        (lambda p: p.write_bytes(pickle.dumps({"images": 1})), "samples.npz: not a readable npz"),
        (
            lambda p: np.savez(
                p, images=np.zeros((75, 28, 28), np.float32), labels=np.zeros(75, np.uint8)
            ),
            "array 'images' is float32",
        ),
        (
            lambda p: np.savez(
                p, images=np.zeros((75, 28, 28), np.uint8), labels=np.full(75, 12, np.int64)
            ),
            "array 'labels' holds 12..12",
        ),
        (
            lambda p: np.savez(p, images=np.zeros((75, 28, 28), np.uint8)),
            "array 'labels' is missing",
        ),
        (
            lambda p: np.savez(
                p, images=np.zeros((0, 28, 28), np.uint8), labels=np.zeros(0, np.uint8)
            ),
            "1 <= n <= 75",
        ),
    ],
    ids=["raw-pickle", "float-images", "label-range", "no-labels", "no-images"],
)
def test_bad_samples_are_refused(run_dir, capsys, write, expected):
    write(run_dir / report.SAMPLES)
    _report_fails(run_dir, capsys, "samples.npz: ", expected)


def test_a_figures_link_leading_outside_is_refused(run_dir, capsys, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (run_dir / "figures").symlink_to(outside)
    _report_fails(run_dir, capsys, "outside the run folder")
    assert not any(outside.iterdir())


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir], ids=["fifo", "folder"])
@pytest.mark.parametrize("command", ["report", "predict"])
def test_a_results_json_that_is_not_a_file_is_named_for_what_it_is(run_dir, capsys, make, command):
    """Not "not found": the user sees what is in the way (and nothing waits on a FIFO)."""
    (run_dir / runfolder.RESULTS).unlink()
    make(run_dir / runfolder.RESULTS)
    what = "a FIFO" if make is os.mkfifo else "a folder"
    args = [command, str(run_dir)] + ([str(run_dir / "in.npy")] if command == "predict" else [])
    with no_hang():
        assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"committee: error: {run_dir / runfolder.RESULTS} is {what}; expected a regular file "
        "(the tool neither writes nor reads through it: move it away)"
    )


def test_a_members_model_file_is_named_for_what_it_is(run_dir):
    model = run_dir / runfolder.MODELS / "model1.keras"
    with pytest.raises(runfolder.RunFolderError, match=r"model1.keras not found; expected member"):
        load_committee(run_dir)
    model.parent.mkdir()
    os.mkfifo(model)
    with no_hang(), pytest.raises(runfolder.RunFolderError, match=r"model1.keras is a FIFO;"):
        load_committee(run_dir)


def test_three_members_pass_the_check():
    """Three members: three pairs in diversity, six scored names elsewhere."""
    from committee.rundir import schema

    schema.check_results(json.loads(runfolder.json_text(synthetic_results(("a", "b", "c")))), "x")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda r: r["data"].__setitem__("n_test", 10**400),
            "field 'data.n_test' has 1000000",
        ),
        (
            lambda r: r["confusion_matrix"]["model1"][0].__setitem__(0, 2**53 + 1),
            "field 'confusion_matrix.model1[0][0]' has 9007199254740993; expected less than "
            "or equal to 9007199254740992",
        ),
        (lambda r: r["run"].__setitem__("seed", 2**40), "field 'run.seed' has 1099511627776"),
        (
            lambda r: r["members"]["model1"].__setitem__("accuracy", float("inf")),
            "field 'members.model1.accuracy' has inf; expected a finite number",
        ),
        (
            lambda r: r["config"]["members"][0].__setitem__("epochs", 10**30),
            "field 'config.members[0].epochs' has 1000000",
        ),
        # scores, weights and times out of what they can be are damage, not figures to draw
        (
            lambda r: r["members"]["model1"].__setitem__("accuracy", 5.0),
            "field 'members.model1.accuracy' has 5.0; expected less than or equal to 1",
        ),
        (
            lambda r: r["weights"].__setitem__("model1", -1.0),
            "field 'weights.model1' has -1.0; expected greater than or equal to 0",
        ),
        (
            lambda r: r["run"].__setitem__("wall_s", -5.0),
            "field 'run.wall_s' has -5.0; expected greater than or equal to 0",
        ),
        (
            lambda r: r["training"]["model1"].__setitem__("train_s", float("nan")),
            "field 'training.model1.train_s' has nan; expected a finite number",
        ),
        (
            lambda r: r["training"]["model1"]["history"].__setitem__("accuracy", [float("inf")]),
            "field 'training.model1.history.accuracy[0]' has inf; expected a finite number",
        ),
    ],
    ids=[
        "huge-count",
        "count-past-float64",
        "huge-seed",
        "infinite-score",
        "huge-epochs",
        "accuracy-above-1",
        "negative-weight",
        "negative-wall-time",
        "nan-train-time",
        "infinite-history",
    ],
)
def test_numbers_past_what_the_report_can_draw_are_refused(run_dir, capsys, edit, expected):
    """The schema bounded counts below only: 10**400 passed it and overflowed in a figure."""
    _edit_results(run_dir, edit)
    _report_fails(run_dir, capsys, "results.json: " + expected)


def test_a_member_name_too_long_for_the_file_system_is_refused_before_drawing(run_dir, capsys):
    """240 characters: its figure's name fits in 255 bytes, its temporary file's does not."""
    long = "m" * 240
    runfolder.write_json(run_dir / runfolder.RESULTS, synthetic_results((long, "model2")))
    _report_fails(
        run_dir,
        capsys,
        f"curves_{long}.png: its name of 251 bytes is too long for its file system",
        "expected names that fit",
    )


def test_a_folder_that_takes_no_new_file_is_refused_before_drawing(run_dir, capsys, monkeypatch):
    """A read-only folder or file system (os.access says so, for root too on the latter)."""
    import os

    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != run_dir and access(p, mode))
    _report_fails(run_dir, capsys, f"{run_dir} does not accept new files")


@pytest.mark.parametrize(
    "raised, status, expected",
    [
        (
            OSError(28, "No space left on device", "/r/figures/.a.png.abcdefgh.tmp"),
            2,
            "committee: error: no space left on device writing "
            "/r/figures/.a.png.abcdefgh.tmp; free space and rerun committee report",
        ),
        (
            OSError(30, "Read-only file system", "/r/figures/.a.png.abcdefgh.tmp"),
            2,
            "committee: error: /r/figures/.a.png.abcdefgh.tmp: Read-only file system",
        ),
        (
            KeyboardInterrupt(),
            130,
            "committee: interrupted; each file is either redrawn or as it was: rerun "
            "committee report to redraw them all",
        ),
    ],
    ids=["disk-full", "read-only", "ctrl-c"],
)
def test_a_write_failing_while_drawing_is_one_line(
    run_dir, capsys, monkeypatch, raised, status, expected
):
    def failing(path):
        raise raised

    monkeypatch.setattr(runfolder, "atomic_path", failing)
    assert cli.main(["report", str(run_dir)]) == status
    captured = capsys.readouterr()
    assert captured.err == expected + "\n" and captured.out == ""
