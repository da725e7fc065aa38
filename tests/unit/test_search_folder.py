"""A search's folder (``committee tune``) given to ``report`` and ``predict``: report rewrites
the search's own report.md; predict says in one line what to run instead (exit 2, no Ray)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from committee.app import cli
from committee.rundir import folder as runfolder

SUMMARIES = {
    "model1": {
        "best_config": {"learning_rate": 0.0023, "optimizer": "adamw", "arch.filters": 64},
        "best_val_accuracy": 0.86,
        "best_checkpoint": "/elsewhere/checkpoint_000003",
        "tta": "none",
    }
}
SCORES = {
    which: {
        "members": {"model1": {"accuracy": acc, "val_accuracy": acc - 0.01}},
        "committee": {"mean": {"accuracy": acc, "val_accuracy": acc - 0.01}},
    }
    for which, acc in (("default", 0.81), ("tuned", 0.85))
}
META = {"name": "search", "num_samples": 2, "scheduler": "fifo", "n_val": 120, "seed": 0}


@pytest.fixture
def search_dir(tmp_path) -> Path:
    folder = tmp_path / "runs" / "search"
    config = runfolder.prepare(folder, "new", {"identity": {"kind": "tune", "preset": "strong"}})
    assert config["identity"]["kind"] == "tune"
    runfolder.write_json(
        folder / runfolder.BEST_CONFIGS, {n: s["best_config"] for n, s in SUMMARIES.items()}
    )
    runfolder.write_json(
        folder / runfolder.RESULTS, {"search": META, "members": SUMMARIES, **SCORES}
    )
    runfolder.finish(folder)
    return folder


def test_report_rewrites_the_searchs_report(search_dir, capsys):
    assert runfolder.is_search(search_dir)
    assert cli.main(["report", str(search_dir)]) == 0
    assert capsys.readouterr().out.split() == [str(search_dir / runfolder.REPORT)]
    text = (search_dir / runfolder.REPORT).read_text()
    assert text.startswith("# Hyper-parameter search `search`")
    assert "| model1 | 0.8000 | 0.8400 | 0.8100 | 0.8500 | learning_rate=0.0023" in text
    assert "committee run --config <this folder>/best_configs.json" in text


def test_report_of_a_damaged_search_is_one_line(search_dir, capsys):
    (search_dir / runfolder.RESULTS).write_text('{"search": {"name": "x"}, "members": {}}')
    assert cli.main(["report", str(search_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "results.json: field 'search.num_samples' is missing" in err, err


def test_report_of_an_unfinished_search_says_what_to_run(search_dir, capsys):
    (search_dir / runfolder.RESULTS).unlink()
    (search_dir / runfolder.INCOMPLETE).write_text("")
    assert cli.main(["report", str(search_dir)]) == 2
    assert "rerun the same committee tune --run-name to finish it" in capsys.readouterr().err


def test_predict_on_a_search_says_what_to_run_instead(search_dir, capsys, tmp_path):
    image = tmp_path / "x.npy"
    image.write_bytes(b"")
    assert cli.main(["predict", str(search_dir), str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err == (
        f"committee: error: {search_dir} is a search's folder (committee tune), which keeps "
        "no trained committee; expected a run's: train its best configurations with "
        f"committee run --preset strong --config {search_dir / 'best_configs.json'}, then "
        "predict with that run's folder"
    )
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_a_run_folder_is_not_a_search(tmp_path):
    run = tmp_path / "run"
    runfolder.prepare(run, "new", {"identity": {"kind": "run", "preset": "seed"}})
    assert not runfolder.is_search(run)
    assert runfolder.search_preset(run) == "seed"
