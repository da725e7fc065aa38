"""The Keras backend of a process (committee/training/backend.py), chosen by option or
KERAS_BACKEND, and each backend's process settings (the processes themselves: tests/keras)."""

import pytest

from committee.training import backend


def test_the_option_wins_then_keras_backend_then_tensorflow(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backend.resolve("tensorflow") == "tensorflow"
    assert backend.resolve(None) == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    assert backend.resolve(None) == "tensorflow"
    with pytest.raises(
        ValueError,
        match=r"--backend 'torch' is not a backend this job runs on; "
        r"expected one of tensorflow, jax",
    ):
        backend.resolve("torch")
    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    with pytest.raises(ValueError, match=r"^KERAS_BACKEND 'numpy' is not a backend"):
        backend.resolve(None)


def test_each_backend_gets_its_thread_and_gpu_memory_settings():
    assert backend.process_env("tensorflow", threads=1, gpu_share=0.33) == {
        "KERAS_BACKEND": "tensorflow"
    }  # TensorFlow's are set in the process (configure)
    env = backend.process_env("jax", threads=1, gpu_share=0.33)
    assert env["KERAS_BACKEND"] == "jax"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # not 75% of the GPU each
    assert float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) < 0.33
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]
    whole = backend.process_env("jax", threads=4, gpu_share=1.0)
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in whole and "XLA_FLAGS" not in whole
