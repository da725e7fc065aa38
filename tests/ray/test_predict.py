"""`committee predict` on a real (tiny) run folder: new inputs reproduce the run's own test
predictions, and bad inputs fail in one line with exit status 2 before Ray starts."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from helpers import SMALL_RUN_MEMBERS, run_cli

N = 20  # the first N test images


RULES = ("mean", "geometric", "weighted")


@pytest.fixture(scope="module")
def run_dir(small_run):
    """The shared small run (conftest.shared_run: the seed's three members, trained on JAX
    where it is installed); predicting here runs TensorFlow."""
    return small_run


@pytest.fixture(scope="module")
def expected(run_dir):
    """The run's own predictions of the first N test images."""
    return pq.read_table(run_dir / "predictions.parquet").slice(0, N)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, dataset):
    """The first N raw test images as a folder of PNGs, uint8 and float .npy, an IDX .gz."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("inputs")
    raw = dataset.x_test[:N]  # uint8 (N, 28, 28)
    (folder / "pngs").mkdir()
    for i, image in enumerate(raw):
        Image.fromarray(image, mode="L").save(folder / "pngs" / f"test_{i:03d}.png")
    np.save(folder / "u8.npy", raw)
    np.save(folder / "f32.npy", raw.astype(np.float32) / 255)
    with gzip.open(folder / "images.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, N, 28, 28) + raw.tobytes())
    return folder


@pytest.fixture(scope="module")
def local_ray():
    """One in-process local Ray for every prediction of this module."""
    import ray

    from committee.distributed.cluster import connect

    connect()
    yield
    ray.shutdown()


def _probas(table, column: str) -> np.ndarray:
    return np.stack(table[column].to_numpy(zero_copy_only=False))


def _same_as_run(table, expected, rows: slice = slice(None)) -> None:
    """The predicted rows equal the run's own, member by member and rule by rule."""
    for column in (*SMALL_RUN_MEMBERS, *(f"committee_{r}" for r in RULES)):
        np.testing.assert_allclose(
            _probas(table, f"{column}_proba")[rows], _probas(expected, f"{column}_proba"), atol=1e-5
        )
        assert (
            table[f"{column}_pred"].to_numpy()[rows] == expected[f"{column}_pred"].to_numpy()
        ).all()
    assert (table["class"].to_numpy()[rows] == expected["committee_mean_pred"].to_numpy()).all()


def _bad_inputs(folder, run_dir):
    """(arguments after `predict`, the file its one error line must name)."""
    (folder / "x.png").write_text("not an image")
    np.save(folder / "wide.npy", np.zeros((5, 32, 32), np.uint8))
    np.save(folder / "scaled.npy", np.linspace(0, 255, 3 * 28 * 28).reshape(3, 28, 28))
    no_models = folder / "no-models"
    no_models.mkdir()
    shutil.copy(run_dir / "results.json", no_models / "results.json")
    ok = str(folder / "wide.npy")
    return {
        "text as png": ([str(run_dir), str(folder / "x.png")], "x.png"),
        "wrong shape": ([str(run_dir), ok], "wide.npy"),
        "float up to 255": ([str(run_dir), str(folder / "scaled.npy")], "scaled.npy"),
        "no models": ([str(no_models), ok], str(no_models / "models" / "model1.keras")),
        "unknown extension": ([str(run_dir), ok, "--output", str(folder / "o.txt")], "o.txt"),
        "missing folder": (
            [str(run_dir), ok, "--output", str(folder / "no" / "o.csv")],
            str(folder / "no"),
        ),
    }


def test_png_folder_reproduces_the_runs_predictions(run_dir, expected, inputs, local_ray, tmp_path):
    from committee.app.options import PredictOptions
    from committee.app.predict import predict
    from committee.data.fashion_mnist import CLASS_NAMES

    out = tmp_path / "pngs.parquet"
    path, _ = predict(PredictOptions(run_dir, [str(inputs / "pngs")], output=str(out)))
    assert path == out
    table = pq.read_table(out)
    assert table.num_rows == N
    _same_as_run(table, expected)
    assert table["input"].to_pylist() == [
        str(inputs / "pngs" / f"test_{i:03d}.png") for i in range(N)
    ]
    assert set(table["index"].to_pylist()) == {0}
    assert table["class_name"].to_pylist() == [CLASS_NAMES[c] for c in table["class"].to_pylist()]
    members = np.stack([table[f"{m}_pred"].to_numpy() for m in SMALL_RUN_MEMBERS])
    np.testing.assert_allclose(
        table["disagreement"].to_numpy(), (members != table["class"].to_numpy()).mean(axis=0)
    )
    p = _probas(table, "committee_mean_proba").astype(np.float64)
    np.testing.assert_allclose(
        table["entropy"].to_numpy(), -(p * np.log(p)).sum(axis=1), rtol=1e-5, atol=1e-6
    )
    assert not list(run_dir.glob("predictions-*"))  # the run folder is left as it was


def test_arrays_and_idx_reproduce_the_runs_predictions_as_csv(
    run_dir, expected, inputs, local_ray, tmp_path, capfd
):
    from committee.app.options import PredictOptions
    from committee.app.predict import predict

    files = [inputs / "u8.npy", inputs / "f32.npy", inputs / "images.gz"]
    out = tmp_path / "arrays.csv"
    predict(PredictOptions(run_dir, [str(f) for f in files], output=str(out), rule="weighted"))
    log = capfd.readouterr().err
    assert f"{files[0]}: uint8 ({N}, 28, 28): integers 0..255, divided by 255" in log
    assert f"{files[1]}: float32 ({N}, 28, 28): floats in [0, 1], used as they are" in log
    assert f"{files[2]}: IDX images uint8 ({N}, 28, 28)" in log
    # Ray Data's INFO lines (start, plan, end of each execution) stay in its log files.
    assert "Starting execution of Dataset" not in log and "execution finished" not in log
    # nor Ray Data's warnings about itself, nor the core worker's ERROR line about its actors
    # (they go to committee-predict-driver.err in Ray's session logs)
    assert "Progress bars disabled" not in log and "core_worker.cc" not in log, log
    table = pcsv.read_csv(out)
    assert table.num_rows == 3 * N
    assert table["input"].to_pylist() == [str(f) for f in files for _ in range(N)]
    assert table["index"].to_pylist() == list(range(N)) * 3
    for k, _ in enumerate(files):
        rows = slice(k * N, (k + 1) * N)
        for column in (*SMALL_RUN_MEMBERS, *(f"committee_{r}" for r in RULES)):
            flat = np.stack([table[f"{column}_proba_{c}"].to_numpy() for c in range(10)], axis=1)
            np.testing.assert_allclose(flat[rows], _probas(expected, f"{column}_proba"), atol=1e-5)
        assert (
            table["class"].to_numpy()[rows] == expected["committee_weighted_pred"].to_numpy()
        ).all()


def test_a_model_that_does_not_load_is_one_error_naming_it(run_dir, inputs, local_ray, tmp_path):
    import zipfile

    from committee.app.options import PredictOptions
    from committee.app.predict import predict
    from committee.errors import RunFolderError

    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir / "models", damaged / "models")
    shutil.copy(run_dir / "results.json", damaged / "results.json")
    with zipfile.ZipFile(damaged / "models" / "model2.keras", "w") as archive:
        archive.writestr("config.json", "{}")  # the parts of a .keras file, but no model
        archive.writestr("model.weights.h5", "not HDF5")
    with pytest.raises(RunFolderError) as error:
        predict(PredictOptions(damaged, [str(inputs / "u8.npy")], output=str(tmp_path / "o.csv")))
    assert str(error.value).startswith(
        f"{damaged / 'models' / 'model2.keras'} could not be loaded in Keras' safe mode"
    )
    assert "\n" not in str(error.value) and not (tmp_path / "o.csv").exists()
    with zipfile.ZipFile(damaged / "models" / "model2.keras", "w") as archive:
        archive.writestr("notes.txt", "a zip, but no model in it")  # refused before Ray
    with pytest.raises(RunFolderError, match="is not a whole .keras file"):
        predict(PredictOptions(damaged, [str(inputs / "u8.npy")], output=str(tmp_path / "o.csv")))


def test_bad_inputs_are_one_line_and_exit_2(run_dir, tmp_path, capsys):
    from committee.app.cli import main

    for case, (args, named) in _bad_inputs(tmp_path, run_dir).items():
        assert main(["predict", *args]) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("committee: error: "), (case, err)
        assert named in err, (case, err)


def test_the_command_line_exits_2_on_a_bad_array(run_dir, tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((5, 32, 32), np.uint8))
    proc = run_cli("predict", str(run_dir), str(tmp_path / "wide.npy"), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"committee: error: input {tmp_path / 'wide.npy'}: array of shape "
        f"(5, 32, 32); expected (n, 28, 28) or (28, 28)\n"
    )


def test_an_unknown_keras_backend_is_refused_before_ray_starts(run_dir, tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((2, 28, 28), np.uint8))
    proc = run_cli(
        "predict",
        str(run_dir),
        str(tmp_path / "ok.npy"),
        "--output",
        str(tmp_path / "out.csv"),
        env={"KERAS_BACKEND": "numpy"},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "committee: error: KERAS_BACKEND 'numpy' is unknown; expected one of tensorflow, jax\n"
    )
    assert not (tmp_path / "out.csv").exists()


def test_the_python_api_and_the_export_reproduce_the_run_without_ray(run_dir, dataset, tmp_path):
    """In-process Keras (TensorFlow here; the members trained on JAX where it is installed),
    no Ray: committee.load gives predictions.parquet's probabilities and results.json's
    accuracy for every rule on the whole test set, and committee export's file (loaded with
    plain keras.saving.load_model in safe mode) each rule's committee to 1e-5."""
    import json

    import keras

    import committee
    from committee.app.cli import main

    table = pq.read_table(run_dir / "predictions.parquet")
    results = json.loads((run_dir / "results.json").read_text())
    x, y = dataset.x_test, dataset.y_test
    clf = committee.load(run_dir)
    for rule in RULES:
        clf.rule = rule
        expected_proba = _probas(table, f"committee_{rule}_proba")
        np.testing.assert_allclose(clf.predict_proba(x), expected_proba, atol=1e-5)
        score, recorded = clf.score(x, y), results["committee"][rule]["accuracy"]
        print(f"score {rule}: {score!r} from Python, {recorded!r} in results.json")
        assert abs(score - recorded) <= 1 / len(y)  # at most one near-tie decided otherwise
    images = (x.astype(np.float32) / 255)[..., np.newaxis]
    for rule in RULES:
        out = tmp_path / f"{rule}.keras"
        assert main(["export", str(run_dir), "--rule", rule, "--output", str(out)]) == 0
        model = keras.saving.load_model(out, safe_mode=True)
        got = model.predict(images, batch_size=1024, verbose=0)
        difference = float(np.abs(got - _probas(table, f"committee_{rule}_proba")).max())
        print(f"export {rule}: max |difference| {difference:.3g} from predictions.parquet")
        assert difference <= 1e-5
