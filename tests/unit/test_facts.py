"""One home for each fact: rule names, the probability floor, the ECE bins, the run folder's
figure and file names, the fields added later, clip-and-renormalise. Each test checks that the
places which use a fact take it from its one home (NumPy, sklearn, matplotlib; no Keras, no
Ray, no subprocess)."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss

from committee.data.fashion_mnist import NUM_CLASSES
from committee.ensemble import diagnostics, fusion, scoring
from committee.members import spec as spec_mod
from committee.report import figures
from committee.report import render as report
from committee.rundir import folder as runfolder
from committee.rundir import identity, member_files, schema

PACKAGE = Path(__file__).resolve().parents[2] / "committee"
MEMBERS = ("model1", "model2")
LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _probas(rng, n: int) -> np.ndarray:
    return rng.dirichlet(np.ones(NUM_CLASSES), size=n)


def _results(members=MEMBERS, seed: int = 0) -> dict:
    """A results.json as a run writes it, for random members, checked by the schema."""
    rng = np.random.default_rng(seed)
    n_test, n_val = 120, 60
    y_test, y_val = rng.integers(0, NUM_CLASSES, n_test), rng.integers(0, NUM_CLASSES, n_val)
    scores, _ = scoring.score_committee(
        {m: _probas(rng, n_test) for m in members},
        y_test,
        {m: _probas(rng, n_val) for m in members},
        y_val,
    )
    history = {k: [0.5, 0.6] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    results = {
        "run": {
            "name": "facts",
            "preset": "seed",
            "members": list(members),
            "seed": seed,
            "placement": "1 CPU",
            "wall_s": 1.0,
        },
        "config": {"members": [{"name": m, "epochs": 2} for m in members]},
        "data": {
            "split": "tail",
            "n_train": 800,
            "n_val": n_val,
            "n_test": n_test,
            "class_counts": {
                "train": [80] * NUM_CLASSES,
                "validation": [6] * NUM_CLASSES,
                "test": [12] * NUM_CLASSES,
            },
        },
        "training": {
            m: {"epochs_run": 2, "stopped_early": False, "history": history} for m in members
        },
        **scores,
    }
    results = json.loads(runfolder.json_text(results))  # as results.json holds it
    schema.check_results(results, "results.json")
    return results


def _samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5, dtype=np.uint8)


def _string_constants(path: Path) -> set[str]:
    """The string literals of a module, docstrings and f-string pieces included."""
    tree = ast.parse(path.read_text())
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


# --------------------------------------------------------------------------- 1. rule names


def test_rule_names_are_spelled_only_in_fusion():
    assert (fusion.MEAN, fusion.WEIGHTED, fusion.GEOMETRIC) == fusion.RULES
    for package in ("ensemble", "report", "rundir"):
        for path in sorted((PACKAGE / package).glob("*.py")):
            if path.name == "fusion.py":
                continue
            spelled = _string_constants(path) & set(fusion.RULES)
            assert not spelled, f"{path.name} spells rule names {spelled}; use fusion.RULES"


def test_search_report_has_a_row_per_rule_of_fusion(monkeypatch):
    scores = {
        "tuned": {"committee": {r: {"accuracy": 0.9, "val_accuracy": 0.8} for r in fusion.RULES}}
    }
    meta = {"name": "s", "num_samples": 2, "scheduler": "asha", "n_val": 10}
    rows = [
        line
        for line in report.search_markdown({}, scores, meta).splitlines()
        if line.startswith("| **committee (")
    ]
    assert rows == [f"| **committee ({r})** | – | 0.8000 | – | 0.9000 | |" for r in fusion.RULES]
    monkeypatch.setattr(fusion, "RULES", ("mean", "median"))  # the loop reads fusion.RULES
    text = report.search_markdown({}, scores, meta)
    assert "committee (median)" in text and "committee (weighted)" not in text


def test_fuse_and_scoring_cover_every_rule():
    rng = np.random.default_rng(0)
    probas = [_probas(rng, 30) for _ in range(3)]
    for rule in fusion.RULES:
        fused = fusion.fuse(probas, rule, [0.2, 0.3, 0.5])
        np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="rule 'weighted' needs weights"):
        fusion.fuse(probas, fusion.WEIGHTED)
    y = rng.integers(0, NUM_CLASSES, 30)
    results, rules = scoring.score_committee(
        dict(zip("abc", probas)), y, dict(zip("abc", probas)), y
    )
    assert set(rules) == set(results["committee"]) == set(fusion.RULES)


# --------------------------------------------------------------------------- 2. the floor


def test_one_probability_floor():
    assert diagnostics.PROBA_FLOOR is fusion.PROBA_FLOOR
    assert not hasattr(fusion, "_EPS")
    one_hot = np.eye(NUM_CLASSES)[[0, 3]]
    assert diagnostics.clip_probas(one_hot).min() == pytest.approx(fusion.PROBA_FLOOR, rel=1e-5)
    # the geometric rule takes logs of probabilities floored at the same value
    other = np.full((2, NUM_CLASSES), 1 / NUM_CLASSES)
    logp = (np.log(np.clip(one_hot, fusion.PROBA_FLOOR, 1)) + np.log(other)) / 2
    expected = np.exp(logp) / np.exp(logp).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fusion.geometric_rule([one_hot, other]), expected)


# --------------------------------------------------------------------------- 3. ECE bins


def test_every_binning_takes_n_bins(monkeypatch):
    rng = np.random.default_rng(2)
    y, proba = rng.integers(0, NUM_CLASSES, 500), _probas(rng, 500)
    bins = diagnostics.reliability_bins(y, proba)
    assert all(len(v) == diagnostics.N_BINS for v in bins.values())
    ece = sum(
        count / len(y) * abs(acc - conf)
        for count, conf, acc in zip(bins["count"], bins["confidence"], bins["accuracy"])
        if count
    )  # ECE and the reliability diagram come from the same bins
    assert diagnostics.expected_calibration_error(y, proba) == pytest.approx(ece, abs=1e-12)
    for field in ("confidence", "accuracy", "count"):
        (length,) = {
            m.min_length
            for m in schema.Bins.model_fields[field].metadata
            if hasattr(m, "min_length")
        }
        assert length == diagnostics.N_BINS
    drawn = {}
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.setdefault("fig", fig))
    figures.reliability_diagram({"m": bins}, "unused.png")
    assert drawn["fig"].axes[0].get_title() == f"reliability ({diagnostics.N_BINS} bins)"
    assert f"| ECE ({diagnostics.N_BINS} bins) |" in report.markdown(_results(), [])


# --------------------------------------------------------------------------- 4. figures


def test_markdown_links_samples_only_when_drawn():
    results = _results()
    without = report.markdown(results, report.figure_plan(results, None))
    with_samples = report.markdown(results, report.figure_plan(results, _samples()))
    sample_link = f"{runfolder.FIGURES}/{figures.SAMPLES_PNG}"
    assert sample_link not in without
    assert f"- ![sample images]({sample_link})" in with_samples.splitlines()
    assert without.replace("\n", "") == with_samples.replace(
        f"- ![sample images]({sample_link})\n", ""
    ).replace("\n", "")


@pytest.mark.parametrize("members", [("solo",), ("a", "b", "c")])
@pytest.mark.parametrize("with_samples", [False, True])
def test_report_links_exactly_the_figures_written(tmp_path, members, with_samples):
    results = _results(members)
    samples = _samples() if with_samples else None
    plan = report._outputs(tmp_path, results, report.figure_plan(results, samples))
    links = LINK.findall(report.markdown(results, report.figure_plan(results, samples)))
    written = [str(p.relative_to(tmp_path)) for p in plan if p.name != runfolder.REPORT]
    assert links == written
    assert all(link.startswith(f"{runfolder.FIGURES}/") for link in links)
    expected = [figures.curves_png(m) for m in members] + [figures.CONFUSION_PNG]
    expected += [figures.DIVERSITY_PNG] if len(members) > 1 else []
    expected += [figures.RELIABILITY_PNG, figures.CLASS_DISTRIBUTION_PNG]
    expected += [figures.SAMPLES_PNG] if with_samples else []
    assert [Path(link).name for link in links] == expected


def test_render_without_samples_links_no_missing_figure(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "save", lambda fig, path: runfolder.write_bytes(path, b"png"))
    run_dir = tmp_path / "run"
    results = _results(("only",))
    written = report.render(run_dir, results)
    assert not (run_dir / runfolder.SAMPLES).exists()
    links = LINK.findall((run_dir / runfolder.REPORT).read_text())
    assert figures.SAMPLES_PNG not in " ".join(links)
    assert {run_dir / link for link in links} | {run_dir / runfolder.REPORT} == set(written)
    assert all((run_dir / link).is_file() for link in links)


def test_run_folder_names_have_one_home(tmp_path):
    assert (report.REPORT, report.SAMPLES, report.PREDICTIONS) == (
        runfolder.REPORT,
        runfolder.SAMPLES,
        runfolder.PREDICTIONS,
    )
    for name in (
        runfolder.REPORT,
        runfolder.PREDICTIONS,
        runfolder.SAMPLES,
        runfolder.FIGURES,
        runfolder.MODELS,
        runfolder.MEMBERS,
        runfolder.BEST_CONFIGS,
        runfolder.TRIALS,
    ):
        assert name in runfolder.KNOWN_ENTRIES
    model, info, probs = member_files.member_paths(tmp_path, "m")
    assert (model.parent.name, info.parent.name, probs.parent.name) == (
        runfolder.MODELS,
        runfolder.MEMBERS,
        runfolder.MEMBERS,
    )
    literals = set()
    for package in ("report", "rundir"):
        for path in (PACKAGE / package).glob("*.py"):
            if path.name != "folder.py":
                literals |= _string_constants(path)
    file_names = {runfolder.REPORT, runfolder.PREDICTIONS, runfolder.SAMPLES, runfolder.FIGURES}
    file_names |= {runfolder.MODELS, runfolder.BEST_CONFIGS, runfolder.TRIALS}
    assert not literals & file_names  # spelled in folder.py only


def test_search_report_links_the_trials_figure_it_writes(tmp_path):
    import pyarrow as pa

    summaries = {"m": {"best_config": {"lr": 0.001}}}
    scores = {"default": {"committee": {fusion.MEAN: {"accuracy": 0.9}}}}
    meta = {"name": "s", "num_samples": 2, "scheduler": "asha", "n_val": 10}
    report.write_search(
        tmp_path, summaries, pa.table({"a": [1]}), {"m": [([1, 2], [0.5, 0.6])]}, scores, meta
    )
    text = (tmp_path / runfolder.REPORT).read_text()
    trials = f"{runfolder.FIGURES}/{figures.TRIALS_PNG}"
    assert f"`{trials}`" in text and (tmp_path / trials).is_file()
    for name in (runfolder.TRIALS, runfolder.BEST_CONFIGS):
        assert f"`{name}`" in text and (tmp_path / name).is_file()


# --------------------------------------------------------------------------- 5. added later


def test_fields_added_later_are_two_named_facts(tmp_path):
    assert not hasattr(spec_mod, "LATER_FIELDS") and not hasattr(member_files, "LATER_FIELDS")
    defaults = {f.name: f.default for f in dataclasses.fields(spec_mod.MemberSpec)}
    later = spec_mod.SPEC_FIELDS_ADDED_LATER
    assert later and all(defaults[k] == v for k, v in later.items())
    assert set(member_files.RECORD_FIELDS_ADDED_LATER) <= set(member_files.SAVED_FIELDS)
    # a members/<name>.json from before those fields existed still reads back
    old = {
        "history": {"loss": [1.0]},
        "epochs_run": 1,
        "stopped_early": False,
        "started_at": 1.0,
        "finished_at": 2.0,
        "resumed_at": [],
    }
    assert not set(old) & set(member_files.RECORD_FIELDS_ADDED_LATER)
    state = member_files.state_of_record(old)
    assert all(getattr(state, f) is None for f in member_files.RECORD_FIELDS_ADDED_LATER)
    with pytest.raises(KeyError):
        member_files.state_of_record({k: v for k, v in old.items() if k != "history"})
    # a spec at the neutral values has an identity without them (as recorded before they existed)
    spec = spec_mod.PRESETS["seed"][0]
    plain = identity.member_identity(spec, 0, {}, None)
    assert not set(later) & set(plain["spec"])


# --------------------------------------------------------------------------- 6. clip


def test_one_clip_and_renormalise():
    assert scoring.clip_probas is diagnostics.clip_probas
    proba = np.eye(NUM_CLASSES)[[0, 1, 2, 2]]  # zeros: the log-based scores need the floor
    y = np.array([0, 1, 2, 3])
    clipped = diagnostics.clip_probas(proba)
    np.testing.assert_allclose(clipped.sum(axis=1), 1.0, atol=1e-12)
    assert clipped.min() >= fusion.PROBA_FLOOR / (1 + NUM_CLASSES * fusion.PROBA_FLOOR)
    labels = list(range(NUM_CLASSES))
    expected = log_loss(y, clipped, labels=labels)
    assert scoring.score_probas(y, proba)["log_loss"] == expected
    assert diagnostics.calibration(y, proba)["nll"] == expected
    tree = ast.parse((PACKAGE / "ensemble" / "scoring.py").read_text())
    clips = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "clip"]
    assert not clips  # scoring clips only through diagnostics.clip_probas
