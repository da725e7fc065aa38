"""Run folder semantics, atomic writes and the predictions table."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from committee.report import tables
from committee.rundir import folder as runfolder
from committee.rundir import storage

IDENTITY = {"format": 1, "kind": "run", "seed": 0, "members": {}}


def _finished_run(run):
    mode = runfolder.check(run, IDENTITY)
    runfolder.prepare(run, mode, {"identity": IDENTITY})
    runfolder.write_json(run / runfolder.RESULTS, {})
    runfolder.finish(run)
    return mode


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    runfolder.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with runfolder.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert runfolder.read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)


def test_check_new_resume_refuse(tmp_path):
    run = tmp_path / "r"
    assert runfolder.check(run, IDENTITY) == "new" and not run.exists()  # check writes nothing
    config = runfolder.prepare(run, "new", {"identity": IDENTITY})
    assert (run / runfolder.INCOMPLETE).exists() and config["tool"] == runfolder.TOOL
    assert runfolder.check(run, IDENTITY) == "resume"
    again = runfolder.prepare(run, "resume", {"identity": IDENTITY})
    assert again["instance"] == config["instance"]  # a resumed run keeps its storage id
    other = {**IDENTITY, "seed": 3}
    with pytest.raises(runfolder.RunFolderError, match=r"other settings \(seed: 0 -> 3\)"):
        runfolder.check(run, other)
    runfolder.write_json(run / runfolder.RESULTS, {})
    runfolder.finish(run)
    with pytest.raises(runfolder.RunFolderError, match="already holds a complete run"):
        runfolder.check(run, IDENTITY)
    assert runfolder.check(run, other, overwrite=True) == "overwrite"


def test_overwrite_keeps_the_old_run_until_the_new_one_finishes(tmp_path):
    run = tmp_path / "r"
    _finished_run(run)
    (run / "report.md").write_text("old report")
    runfolder.prepare(run, "overwrite", {"identity": IDENTITY})
    assert not (run / "report.md").exists() and (tmp_path / ".r.replaced" / "report.md").exists()
    assert runfolder.abandon(run, "overwrite")  # the new run failed: the old one is back
    assert (run / "report.md").read_text() == "old report" and runfolder.is_complete(run)
    assert not (tmp_path / ".r.replaced").exists()

    runfolder.prepare(run, "overwrite", {"identity": IDENTITY})  # killed before it finished:
    assert runfolder.restore_interrupted_overwrite(run, log=lambda m: None)  # the next run
    assert (run / "report.md").read_text() == "old report"  # puts the old one back first

    runfolder.prepare(run, "overwrite", {"identity": IDENTITY})
    runfolder.write_json(run / runfolder.RESULTS, {"new": True})
    runfolder.finish(run)  # the new run finished: the old one is dropped
    assert runfolder.read_json(run / runfolder.RESULTS) == {"new": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_check_refuses_folders_this_tool_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(runfolder.RunFolderError, match="without this tool's config.json"):
        runfolder.check(tmp_path, IDENTITY, overwrite=True)
    proj = tmp_path / "proj"  # a config.json of someone else's
    proj.mkdir()
    (proj / "config.json").write_text('{"lr": 0.1}')
    (proj / "precious.txt").write_text("keep me")
    with pytest.raises(runfolder.RunFolderError, match="without this tool's config.json"):
        runfolder.check(proj, IDENTITY, overwrite=True)
    run = tmp_path / "r"  # ours, but holding a file we never write
    _finished_run(run)
    (run / "precious.txt").write_text("keep me")
    with pytest.raises(runfolder.RunFolderError, match=r"never writes \(precious.txt\)"):
        runfolder.check(run, IDENTITY, overwrite=True)
    assert (proj / "precious.txt").exists() and (run / "precious.txt").exists()


def test_check_writable(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(PermissionError, match="not writable"):
        runfolder.check_writable(tmp_path / "a-file" / "runs")
    runfolder.check_writable(tmp_path / "new" / "runs")  # creatable: fine


def test_predictions_table_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 7)
    m1, m2 = rng.dirichlet(np.ones(10), 7), rng.dirichlet(np.ones(10), 7)
    table = tables.predictions_table(y, {"m1": m1, "m2": m2}, {"mean": (m1 + m2) / 2})
    tables.write_predictions(tmp_path / "p.parquet", table)
    back = pq.read_table(tmp_path / "p.parquet")
    assert back.num_rows == 7
    np.testing.assert_array_equal(back["label"].to_numpy(), y)
    got = np.stack(back["committee_mean_proba"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, (m1 + m2) / 2, rtol=1e-6)
    np.testing.assert_array_equal(back["committee_mean_pred"].to_numpy(), got.argmax(1))


def test_only_what_an_overwrite_set_aside_is_ever_put_back(tmp_path):
    run = tmp_path / "r"
    _finished_run(run)
    before = sorted(p.name for p in run.iterdir())
    aside = tmp_path / ".r.replaced"
    for crafted in ("empty", "a user's file"):  # not set aside by this tool: refused
        aside.mkdir()
        if crafted != "empty":
            (aside / "notes.txt").write_text("mine")
        with pytest.raises(runfolder.RunFolderError, match="is in the way"):
            runfolder.restore_interrupted_overwrite(run, log=lambda m: None)
        assert sorted(p.name for p in run.iterdir()) == before and runfolder.is_complete(run)
        shutil.rmtree(aside)
    # a real set-aside run beside a complete run that does not record replacing it: refused
    other = tmp_path / "other"
    _finished_run(other)
    os.replace(other, aside)
    with pytest.raises(runfolder.RunFolderError, match="does not record"):
        runfolder.restore_interrupted_overwrite(run, log=lambda m: None)
    assert runfolder.is_complete(run) and aside.is_dir()


def test_an_overwrite_killed_after_it_finished_keeps_the_new_run(tmp_path):
    run = tmp_path / "r"
    _finished_run(run)
    runfolder.prepare(run, "overwrite", {"identity": IDENTITY})
    runfolder.write_json(run / runfolder.RESULTS, {"new": True})
    runfolder.mark_complete(run)  # killed here, before the old run was dropped
    assert not runfolder.restore_interrupted_overwrite(run, log=lambda m: None)
    assert runfolder.read_json(run / runfolder.RESULTS) == {"new": True}
    assert not (tmp_path / ".r.replaced").exists()


def test_overwrite_refuses_links_and_tampered_instances(tmp_path):
    run = tmp_path / "r"
    _finished_run(run)
    link = tmp_path / "link"
    link.symlink_to(run)
    with pytest.raises(runfolder.RunFolderError, match="is a symbolic link"):
        runfolder.check(link, IDENTITY, overwrite=True)
    config = runfolder.read_json(run / "config.json")
    runfolder.write_json(run / "config.json", {**config, "instance": "../../escape"})
    with pytest.raises(runfolder.RunFolderError, match="field 'instance' is '../../escape'"):
        runfolder.check(run, IDENTITY, overwrite=True)
    (run / "config.json").write_text('{"tool": "fashion-comm')  # torn
    with pytest.raises(runfolder.RunFolderError, match="config.json is unreadable"):
        runfolder.check(run, IDENTITY)


def test_storage_must_not_be_empty():
    with pytest.raises(ValueError, match="--storage '' is empty"):
        storage.check_storage("")


def test_unnamed_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    """`for s in 0 1; do committee run --seed $s & done`: the default name was the time to the
    second, so the second run found the first one's folder locked ("in use by another run")."""
    from datetime import datetime

    from committee.app.options import RunOptions, check_run_name
    from committee.app.run import fix_run_name

    now = datetime(2026, 1, 2, 3, 4, 5)
    # 24 random bits: 50 names collide with probability ~7e-5 (1,000 did ~3% of the time)
    names = {runfolder.stamp(now) for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("20260102-030405-") for n in names)
    runs = [RunOptions(seed=s, output=str(tmp_path)) for s in (0, 1)]
    folders = [fix_run_name(options, "seed") for options in runs]
    assert folders[0] != folders[1]
    for options in runs:
        check_run_name(options.run_name)  # a plain folder name, as --run-name would need
    with runfolder.RunLock(folders[0]), runfolder.RunLock(folders[1]):
        pass  # both runs hold their folders at once
    named = RunOptions(run_name="mine", output=str(tmp_path))
    assert fix_run_name(named, "seed") == tmp_path / "mine"  # a given name is kept


@pytest.mark.parametrize("nesting", ["[" * 100_000, '{"a": ' * 100_000])
def test_a_config_nested_too_deeply_is_a_damaged_file_not_a_crash(tmp_path, nesting):
    """A 100,000-deep config.json raised RecursionError: exit 1 and a traceback, where a
    damaged run folder is one line and exit 2."""
    run = tmp_path / "deep"
    run.mkdir()
    (run / runfolder.CONFIG).write_text(nesting)
    with pytest.raises(ValueError, match="nested too deeply"):
        runfolder.read_json(run / runfolder.CONFIG)
    assert runfolder.read_marker(run) is None
    with pytest.raises(runfolder.RunFolderError, match=r"config.json is unreadable \(ValueError\)"):
        runfolder.check(run, IDENTITY)


def test_a_killed_runs_temporary_files_are_removed_by_the_next_run(tmp_path):
    """A run killed while writing left `.results.json.<random>.tmp` (and the like in its
    subfolders) that no rerun removed; a folder holding only such files is a new run's."""
    run = tmp_path / "run"
    runfolder.prepare(run, "new", {"identity": IDENTITY})
    (run / "members").mkdir()
    left = [
        run / ".results.json.k2j_x9aq.tmp",
        run / "members" / ".model1.npz.0abcdefg.tmp",
        run / ".config.json.zz9_0011.tmp",
    ]
    for path in left:
        path.write_text("half")
    kept = [run / ".results.json.tmp", run / "members" / "notes.tmp"]  # not atomic_path's
    for path in kept:
        path.write_text("kept")
    assert runfolder.check(run, IDENTITY) == "resume"
    runfolder.prepare(run, "resume", {"identity": IDENTITY})
    assert not any(path.exists() for path in left)
    assert all(path.exists() for path in kept)

    killed_first = tmp_path / "killed-before-its-marker"
    killed_first.mkdir()
    (killed_first / ".config.json.a1b2c3d4.tmp").write_text("{")
    assert runfolder.check(killed_first, IDENTITY) == "new"  # not "a folder without config.json"
    runfolder.prepare(killed_first, "new", {"identity": IDENTITY})
    assert {p.name for p in killed_first.iterdir()} == {runfolder.CONFIG, runfolder.INCOMPLETE}


def test_atomic_writes_temporary_names_are_the_ones_removed(tmp_path):
    seen = []
    with runfolder.atomic_path(tmp_path / "results.json") as tmp:
        seen.append(tmp.name)
    assert runfolder.is_temporary(seen[0])
