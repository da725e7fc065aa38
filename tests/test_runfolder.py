"""Run folder semantics, atomic writes and the predictions table."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from committee import report, runfolder


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


def test_prepare_new_resume_refuse_overwrite(tmp_path):
    run = tmp_path / "r"
    assert runfolder.prepare(run) == "new" and (run / runfolder.INCOMPLETE).exists()
    (run / "config.json").write_text("{}")
    assert runfolder.prepare(run) == "resume"
    runfolder.write_json(run / runfolder.RESULTS, {})
    runfolder.mark_complete(run)
    assert runfolder.is_complete(run)
    with pytest.raises(FileExistsError, match="already holds a complete run; pass --overwrite"):
        runfolder.prepare(run)
    assert runfolder.prepare(run, overwrite=True) == "overwrite"
    assert sorted(p.name for p in run.iterdir()) == [runfolder.INCOMPLETE]


def test_prepare_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a run folder"):
        runfolder.prepare(tmp_path)


def test_check_writable(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(PermissionError, match="not writable"):
        runfolder.check_writable(tmp_path / "a-file" / "runs")
    runfolder.check_writable(tmp_path / "new" / "runs")  # creatable: fine


def test_predictions_table_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 7)
    m1, m2 = rng.dirichlet(np.ones(10), 7), rng.dirichlet(np.ones(10), 7)
    table = report.predictions_table(y, {"m1": m1, "m2": m2}, {"mean": (m1 + m2) / 2})
    report.write_predictions(tmp_path / "p.parquet", table)
    back = pq.read_table(tmp_path / "p.parquet")
    assert back.num_rows == 7
    np.testing.assert_array_equal(back["label"].to_numpy(), y)
    got = np.stack(back["committee_mean_proba"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, (m1 + m2) / 2, rtol=1e-6)
    np.testing.assert_array_equal(back["committee_mean_pred"].to_numpy(), got.argmax(1))
