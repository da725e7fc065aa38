"""The noise of the test figures: Wilson intervals, McNemar's exact test and per-class accuracy,
and the report's sections built from them, recomputed from a run's predictions.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import binomtest

from committee.app import cli
from committee.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from committee.ensemble import diagnostics, scoring
from committee.report import render as report
from committee.report import tables
from committee.rundir import folder as runfolder

from .test_report_untrusted import synthetic_results


@pytest.mark.parametrize("correct, n", [(0, 10), (10, 10), (3, 7), (8910, 10000), (1, 1)])
def test_wilson_interval_is_scipys(correct, n):
    low, high = diagnostics.wilson_interval(correct, n)
    ci = binomtest(correct, n).proportion_ci(0.95, method="wilson")
    assert low == pytest.approx(ci.low, abs=1e-12) and high == pytest.approx(ci.high, abs=1e-12)
    assert 0 <= low <= correct / n <= high <= 1


def test_wilson_interval_closed_forms():
    # 0 of n: (0, z²/(n + z²)) (Agresti & Coull 1998)
    z2 = diagnostics.Z_95**2
    assert diagnostics.wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    assert diagnostics.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="expected 0 <= correct <= n"):
        diagnostics.wilson_interval(11, 10)


@pytest.mark.parametrize(
    "b, c, p",
    [
        (0, 0, 1.0),
        (5, 5, 1.0),
        (0, 5, 2 * 0.5**5),
        (9, 1, 2 * (1 + 10) / 2**10),
        (10, 20, binomtest(10, 30, 0.5).pvalue),
        (300, 250, binomtest(250, 550, 0.5).pvalue),
    ],
)
def test_mcnemar_exact(b, c, p):
    assert diagnostics.mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)
    assert diagnostics.mcnemar_exact(c, b) == pytest.approx(p, rel=1e-12)


def test_noise_of_scores_counts_the_discordant_pairs():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    predictions = {
        "a": np.array([0, 0, 1, 1, 2, 2, 0, 0]),  # 6 right
        "b": np.array([0, 1, 1, 0, 2, 0, 3, 3]),  # 5 right
        "committee_mean": np.array([0, 0, 1, 1, 2, 2, 3, 0]),  # 7 right
    }
    noise = diagnostics.noise_of_scores(y, predictions, ["a", "b"], ["mean"], 4)
    assert noise["best_member"] == "a"
    assert noise["gain"]["mean"] == {
        "gain": pytest.approx(1 / 8),
        "b": 1,
        "c": 0,
        "p_value": 1.0,
    }
    assert noise["accuracy"]["b"]["correct"] == 5 and noise["accuracy"]["b"]["n"] == 8
    assert noise["per_class"]["a"] == [1.0, 1.0, 1.0, 0.0]
    assert noise["per_class"]["b"] == [0.5, 0.5, 0.5, 1.0]
    assert diagnostics.per_class_accuracy(y, y, 5)[4] is None  # a class with no image


# --------------------------------------------------------------------------- the report

N = 400


def _run(tmp_path: Path, committee_better: bool) -> tuple[Path, dict]:
    """A finished run folder (results.json, predictions.parquet) of two members whose
    committee is right on every image (``committee_better``) or no better than model1."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, NUM_CLASSES, N)

    def member(right: float) -> np.ndarray:
        pred = np.where(rng.random(N) < right, y, (y + 1) % NUM_CLASSES)
        return np.eye(NUM_CLASSES)[pred] * 0.9 + 0.01

    probas = {"model1": member(0.8), "model2": member(0.7)}
    results = synthetic_results()
    scores, rules = scoring.score_committee(probas, y, probas, y)
    if committee_better:
        rules = {r: np.eye(NUM_CLASSES)[y] * 0.9 + 0.01 for r in rules}
    results.update(scores)
    results["data"]["n_test"] = N
    results["data"]["class_counts"]["test"] = np.bincount(y, minlength=10).tolist()
    folder = tmp_path / "run"
    runfolder.write_json(folder / runfolder.RESULTS, results)
    tables.write_predictions(
        folder / runfolder.PREDICTIONS, tables.predictions_table(y, probas, rules)
    )
    return folder, json.loads((folder / runfolder.RESULTS).read_text())


def test_report_shows_intervals_mcnemar_and_per_class_from_predictions(tmp_path):
    folder, results = _run(tmp_path, committee_better=False)
    noise = report.noise_of(folder, results)
    text = report.markdown(results, [], noise)
    assert "| 95% interval (Wilson) |" in text
    model1 = noise["accuracy"]["model1"]
    assert f"[{model1['low']:.4f}, {model1['high']:.4f}]" in text
    assert model1["accuracy"] == pytest.approx(results["members"]["model1"]["accuracy"])
    for rule in results["committee"]:
        # the gain recomputed from the Parquet file is the one results.json holds
        assert noise["gain"][rule]["gain"] == pytest.approx(results["gain_over_best_member"][rule])
    assert "McNemar's exact test" in text and "## Per-class test accuracy" in text
    for name in CLASS_NAMES:
        assert f"| {name} |" in text
    header = next(line for line in text.splitlines() if line.startswith("| class |"))
    rules = " | ".join(f"committee {r}" for r in results["committee"])
    assert header == f"| class | model1 | model2 | {rules} |"
    # each table row has as many cells as its header
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, block


def test_the_noise_sentence_follows_the_p_values(tmp_path):
    folder, results = _run(tmp_path / "a", committee_better=True)
    text = report.markdown(results, [], report.noise_of(folder, results))
    assert "Every rule's difference from model1 is beyond the noise" in text
    folder, results = _run(tmp_path / "b", committee_better=False)
    noise = report.noise_of(folder, results)
    noise["gain"] = {r: {**g, "p_value": 0.5} for r, g in noise["gain"].items()}
    text = report.markdown(results, [], noise)
    assert "within the noise of this test set" in text
    assert "cannot tell the committee from its best member" in text


def test_a_run_without_predictions_renders_without_those_sections(tmp_path):
    folder, results = _run(tmp_path, committee_better=False)
    (folder / runfolder.PREDICTIONS).unlink()
    assert report.noise_of(folder, results) is None
    assert "Wilson" not in report.markdown(results, [], None)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda t: t.drop_columns(["model2_pred"]), "column 'model2_pred' is missing"),
        (lambda t: t.slice(0, N - 1), "with 399 rows; expected 400 integer classes"),
        (
            lambda t: t.set_column(
                t.column_names.index("label"), "label", pa.array(np.full(N, 12, np.int8))
            ),
            "column 'label' holds 12..12; expected classes in 0..9",
        ),
    ],
    ids=["missing-column", "short", "bad-label"],
)
def test_a_damaged_predictions_file_is_one_line(tmp_path, capsys, damage, expected):
    folder, _ = _run(tmp_path, committee_better=False)
    path = folder / runfolder.PREDICTIONS
    pq.write_table(damage(pq.read_table(path)), path)
    assert cli.main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and expected in err, err
    assert not (folder / runfolder.REPORT).exists()


def test_not_parquet_is_one_line(tmp_path):
    folder, results = _run(tmp_path, committee_better=False)
    (folder / runfolder.PREDICTIONS).write_bytes(b"not parquet")
    with pytest.raises(runfolder.RunFolderError, match="not a readable Parquet file"):
        report.noise_of(folder, results)
