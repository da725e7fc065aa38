"""The Keras backend of a process (committee/training/backend.py), chosen by option or
KERAS_BACKEND, and each backend's process settings (the processes themselves: tests/keras)."""

import sys

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


@pytest.mark.parametrize("option, env", [("jax", None), (None, "jax")])
def test_a_backend_whose_package_is_missing_fails_naming_the_extra(option, env, monkeypatch):
    """Before Ray starts, not in every worker: `--backend jax` (or KERAS_BACKEND=jax) where
    jax cannot be imported names the install command."""
    if env is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", env)
    monkeypatch.setitem(sys.modules, "jax", None)  # Python's own "not importable here"
    source = "--backend" if option else "KERAS_BACKEND"
    with pytest.raises(ValueError) as raised:
        backend.resolve(option, installed=True)
    assert str(raised.value).startswith(f"{source} 'jax' needs the jax package")
    assert 'pip install -e ".[jax]"' in str(raised.value)
    assert backend.resolve(option) == "jax"  # the name alone is fine
    assert backend.resolve("tensorflow", installed=True) == "tensorflow"  # a dependency
