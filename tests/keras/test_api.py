"""The Python API (committee.load / CommitteeClassifier) and `committee export` on a real
finished run folder made without Ray: the seed's three members trained one epoch on 480 images
with training.loop.train_member, each with another test-time augmentation, saved, and scored
by ensemble.scoring.score_committee as committee run scores them, written as committee run
writes results.json and predictions.parquet."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import committee
from committee.data import fashion_mnist as data
from committee.errors import InputError, RunFolderError

N_TEST = 200
TTA = {"model1": "mirror+shifts", "model2": "none", "model3": "mirror"}  # every mode once
RULES = ("mean", "geometric", "weighted")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dataset) -> Path:
    from committee.ensemble import scoring
    from committee.members import spec as members
    from committee.report import tables
    from committee.rundir import folder as runfolder
    from committee.training.loop import train_member
    from committee.training.prediction import predict_proba

    folder = tmp_path_factory.mktemp("runs") / "tiny"
    split = data.split_train_val(dataset.x_train, dataset.y_train, limit=600)
    x_test, y_test = data.preprocess(dataset.x_test[:N_TEST]), dataset.y_test[:N_TEST]
    specs, test, val, training = [], {}, {}, {}
    for spec in members.SEED_PRESET:
        spec = dataclasses.replace(spec.with_overrides(epochs=1), tta=TTA[spec.name])
        model, state = train_member(
            spec, split.x_train, split.y_train, split.x_val, split.y_val, verbose=0
        )
        (folder / runfolder.MODELS).mkdir(parents=True, exist_ok=True)
        model.save(folder / runfolder.MODELS / f"{spec.name}.keras")
        test[spec.name] = predict_proba(model, x_test, tta=spec.tta)
        val[spec.name] = predict_proba(model, split.x_val, tta=spec.tta)
        training[spec.name] = {"epochs_run": 1, "stopped_early": False, "history": state.history}
        specs.append(spec)
    scores, rules = scoring.score_committee(test, y_test, val, split.y_val)
    counts = np.bincount(y_test, minlength=10).tolist()
    results = {
        "run": {
            "name": "tiny",
            "preset": "seed",
            "members": [s.name for s in specs],
            "seed": 0,
            "placement": "in-process",
            "wall_s": 1.0,
        },
        "config": {"members": [s.to_dict() for s in specs]},
        "data": {
            "n_train": len(split.y_train),
            "n_val": len(split.y_val),
            "n_test": N_TEST,
            "split": "tail",
            "class_counts": {"train": counts, "test": counts},
        },
        "training": training,
        **scores,
    }
    tables.write_predictions(
        folder / runfolder.PREDICTIONS, tables.predictions_table(y_test, test, rules)
    )
    runfolder.write_json(folder / runfolder.RESULTS, results)
    return folder


@pytest.fixture(scope="module")
def expected(run_dir):
    return pq.read_table(run_dir / "predictions.parquet")


@pytest.fixture(scope="module")
def test_images(dataset):
    return dataset.x_test[:N_TEST], dataset.y_test[:N_TEST]


def _probas(table, column: str) -> np.ndarray:
    return np.stack(table[column].to_numpy(zero_copy_only=False))


def test_the_classifier_reproduces_the_runs_probabilities_and_scores(
    run_dir, expected, test_images
):
    x, y = test_images
    results = json.loads((run_dir / "results.json").read_text())
    clf = committee.load(run_dir)
    assert clf.rule == "mean" and clf.members_ == ["model1", "model2", "model3"]
    assert clf.tta_ == TTA and clf.rules_ == list(RULES)
    assert clf.weights_ == results["weights"]
    assert list(clf.classes_) == list(range(10)) and clf.class_names_[0] == "T-shirt/top"
    members = clf.member_proba(x)
    for name in TTA:
        np.testing.assert_allclose(members[name], _probas(expected, f"{name}_proba"), atol=1e-6)
    for rule in RULES:
        clf.rule = rule
        proba = clf.predict_proba(x)
        assert proba.dtype == np.float32 and proba.shape == (N_TEST, 10)
        np.testing.assert_allclose(proba, _probas(expected, f"committee_{rule}_proba"), atol=1e-6)
        predicted = clf.predict(x)
        assert predicted.dtype == np.int64
        np.testing.assert_array_equal(predicted, expected[f"committee_{rule}_pred"].to_numpy())
        assert clf.score(x, y) == results["committee"][rule]["accuracy"]
    # float pixel / 255 and a channel axis give the same
    clf = committee.CommitteeClassifier(run_dir, rule="weighted")
    scaled = (x.astype(np.float32) / 255)[..., np.newaxis]
    np.testing.assert_array_equal(clf.predict_proba(scaled), clf.predict_proba(x))
    assert "rule='weighted'" in repr(clf)


def test_bad_arguments_are_one_line_naming_them(run_dir, test_images, tmp_path):
    x, y = test_images
    clf = committee.load(run_dir)
    with pytest.raises(InputError, match=r"^x: array of shape \(28, 28\); expected"):
        clf.predict_proba(x[0])
    with pytest.raises(InputError, match=r"^x: float array holds 0\.\.255; expected"):
        clf.predict(x.astype(np.float32))
    with pytest.raises(InputError, match=r"^y: array of shape \(5,\); expected \(200,\)"):
        clf.score(x, y[:5])
    with pytest.raises(
        ValueError, match=r"^rule 'vote' is unknown; expected one of mean, weighted, geometric$"
    ):
        committee.load(run_dir, rule="vote")
    with pytest.raises(ValueError, match=r"^batch_size 0 must"):
        committee.load(run_dir, batch_size=0)
    with pytest.raises(RunFolderError, match="results.json not found"):
        committee.load(tmp_path)


def test_export_reproduces_the_committee_and_loads_in_safe_mode_elsewhere(
    run_dir, expected, test_images, tmp_path
):
    """Every rule exported; a fresh JAX process (this package not imported) loads each file
    with plain keras.saving.load_model(safe_mode=True) and gives the run's committee
    probabilities, member TTA included (model1's ten views, model3's two), to 1e-5."""
    x, _ = test_images
    files = {rule: tmp_path / f"{rule}.keras" for rule in RULES}
    for rule, path in files.items():
        assert committee.export(run_dir, path, rule=rule) == path
    np.save(tmp_path / "x.npy", (x.astype(np.float32) / 255)[..., np.newaxis])
    script = (
        "import sys, keras, numpy as np\n"
        "x = np.load(sys.argv[1])\n"
        "for path in sys.argv[2:]:\n"
        "    model = keras.saving.load_model(path, safe_mode=True)\n"
        "    np.save(path + '.npy', model.predict(x, verbose=0))\n"
        "assert not any(m.startswith('committee') for m in sys.modules)\n"
        "print(keras.config.backend())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), *map(str, files.values())],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["jax"]
    for rule, path in files.items():
        got = np.load(f"{path}.npy")
        assert got.dtype == np.float32 and got.shape == (N_TEST, 10)
        difference = np.abs(got - _probas(expected, f"committee_{rule}_proba")).max()
        assert difference <= 1e-5, (rule, difference)


def test_export_refuses_bad_input_in_one_line_and_logs_the_unexpected(
    run_dir, tmp_path, capsys, monkeypatch
):
    from committee.app import cli

    existing = tmp_path / "taken.keras"
    existing.write_bytes(b"x")
    cases = {
        "exists": (["--output", str(existing)], f"--output {existing} exists; expected a new"),
        "no folder": (
            ["--output", str(tmp_path / "no" / "c.keras")],
            f"folder {tmp_path / 'no'} does not exist",
        ),
        "extension": (["--output", str(tmp_path / "c.h5")], "extension '.h5' is not '.keras'"),
        "run file": (
            ["--output", str(run_dir / "models" / "model1.keras"), "--overwrite"],
            "would replace a file of the run folder",
        ),
    }
    for case, (args, message) in cases.items():
        assert cli.main(["export", str(run_dir), *args]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("committee: error: ") and err.count("\n") == 1, (case, err)
        assert message in err, (case, err)
    assert existing.read_bytes() == b"x"
    assert cli.main(["export", str(tmp_path), "--output", str(tmp_path / "c.keras")]) == 2
    assert "results.json not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", str(run_dir), "--rule", "vote"])
    assert exit_.value.code == 2
    assert "invalid choice: 'vote' (choose from 'mean', 'weighted', 'geometric')" in (
        capsys.readouterr().err
    )

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("committee.app.export.committee_model", broken)
    assert cli.main(["export", str(run_dir), "--output", str(existing), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("committee: error: unexpected RuntimeError: boom (traceback in ")
    log = Path(err.rsplit("traceback in ", 1)[1].rstrip(")\n"))
    assert "RuntimeError: boom" in log.read_text()
    log.unlink()
    assert existing.read_bytes() == b"x" and not list(tmp_path.glob(".*.keras"))
