"""`committee run --backend jax` on a slice of the real data, on a real local Ray cluster
(conftest.small_run, which test_predict also reads): the members train in JAX workers, and the
saved outputs are checked as the TensorFlow run's are (tests/ray/test_run_integration.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import SMALL_RUN_MEMBERS
from sklearn.metrics import accuracy_score

pytest.importorskip("jax")


MEMBERS = SMALL_RUN_MEMBERS


@pytest.fixture(scope="module")
def jax_run(small_run):
    """conftest.small_run, which trains on JAX when JAX is installed (as it is here)."""
    return small_run, None


def test_the_members_trained_on_jax_and_the_run_records_it(jax_run):
    run_dir, _ = jax_run
    results = json.loads((run_dir / "results.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert results["run"]["backend"] == "jax" and config["identity"]["backend"] == "jax"
    assert results["versions"]["jax"] != "not installed"
    for name in MEMBERS:
        assert results["training"][name]["epochs_run"] == 1
        assert f"[{name}] epoch 1/1: accuracy " in (run_dir / "logs" / f"{name}.log").read_text()
        # TensorBoard files without TensorFlow (tensorboardX): train and validation scalars
        for part in ("train", "validation"):
            assert list((run_dir / "tensorboard" / name / part).glob("events.out.tfevents.*"))
    assert "committee (mean)" in (run_dir / "report.md").read_text()


def test_committee_accuracy_recomputed_from_predictions(jax_run):
    run_dir, _ = jax_run
    results = json.loads((run_dir / "results.json").read_text())
    table = pq.read_table(run_dir / "predictions.parquet")
    labels = table["label"].to_numpy()
    members = [np.stack(table[f"{m}_proba"].to_numpy(zero_copy_only=False)) for m in MEMBERS]
    assert accuracy_score(labels, np.mean(members, axis=0).argmax(1)) == pytest.approx(
        results["committee"]["mean"]["accuracy"], abs=1e-12
    )
    for name, proba in zip(MEMBERS, members):
        assert proba.shape == (10_000, 10)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
        assert accuracy_score(labels, proba.argmax(1)) == pytest.approx(
            results["members"][name]["accuracy"], abs=1e-12
        )
    assert results["members"]["model1"]["accuracy"] > 0.5  # one epoch of Adam learns


def test_a_member_trained_on_jax_predicts_alike_under_tensorflow(jax_run):
    """Saved .keras members load under any backend: this test process runs TensorFlow."""
    from committee.data import fashion_mnist as data
    from committee.training.prediction import load_model, predict_proba

    run_dir, _ = jax_run
    table = pq.read_table(run_dir / "predictions.parquet")
    x_test = data.preprocess(data.load(None).x_test[:64])
    model = load_model(run_dir / "models" / "model1.keras")
    saved = np.stack(table["model1_proba"].to_numpy(zero_copy_only=False)[:64])
    np.testing.assert_allclose(predict_proba(model, x_test), saved, atol=1e-4)
