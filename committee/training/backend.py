"""The Keras backend a process trains and predicts with: TensorFlow (the default) or JAX.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so a backend is chosen by the
environment a process starts with: the driver gives every Ray worker :func:`process_env`
through its runtime environment, and each worker calls :func:`configure` before building a
model. A JAX worker never imports TensorFlow. Saved ``.keras`` files load under either.
No Ray here.
"""

from __future__ import annotations

import os

BACKENDS = ("tensorflow", "jax")
DEFAULT = "tensorflow"


# The backends that need an extra of this project installed: backend -> (module, fix).
NEEDS = {"jax": ("jax", 'pip install -e ".[jax]" (on GPUs also jax[cuda12] or jax[cuda13])')}


def resolve(option: str | None, installed: bool = False) -> str:
    """The backend to use: ``option`` (``--backend``) if given, else ``KERAS_BACKEND``, else
    TensorFlow. Raises ValueError naming where an unknown name came from, and with
    ``installed``, where a backend's package (:data:`NEEDS`) cannot be imported here, the
    command that installs it (checked without importing it)."""
    if option is not None:
        name, source = option, "--backend"
    else:
        name, source = os.environ.get("KERAS_BACKEND") or DEFAULT, "KERAS_BACKEND"
    if name not in BACKENDS:
        raise ValueError(
            f"{source} {name!r} is not a backend this job runs on; expected one of "
            f"{', '.join(BACKENDS)}"
        )
    if installed and name in NEEDS and not _importable(NEEDS[name][0]):
        module, fix = NEEDS[name]
        raise ValueError(
            f"{source} {name!r} needs the {module} package, which is not installed here; "
            f"install it with {fix}"
        )
    return name


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked import, or a module without a spec
        return False


def process_env(
    backend: str, threads: int | None = None, gpu_share: float | None = None
) -> dict[str, str]:
    """Environment variables for a process that will train or predict on ``backend``.

    ``threads``: CPU threads the process may use (JAX: one thread turns off XLA's CPU thread
    pool, as TensorFlow's is limited in :func:`configure`). ``gpu_share``: the fraction of a
    GPU the process holds (Ray's fractional GPUs); JAX then allocates on demand instead of
    taking 75% of the GPU at start, within that share, so that members share a GPU.
    """
    env = {"KERAS_BACKEND": backend}
    if backend == "jax":
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        if gpu_share is not None and 0 < gpu_share < 1:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.95 * gpu_share:.3f}"
        if threads == 1:
            env["XLA_FLAGS"] = " ".join(
                filter(
                    None,
                    (
                        os.environ.get("XLA_FLAGS"),
                        "--xla_cpu_multi_thread_eigen=false",
                        "intra_op_parallelism_threads=1",
                    ),
                )
            )
    return env


def configure(backend: str, threads: int | None = None) -> None:
    """Make this process ready to run Keras on ``backend``: check that Keras was imported with
    it (RuntimeError otherwise: ``KERAS_BACKEND`` was set too late) and apply the backend's
    thread and GPU-memory settings (TensorFlow: ``threads`` and memory growth). On another
    backend, Keras is told TensorFlow is absent, so this process never imports it."""
    import keras

    if keras.config.backend() != backend:
        raise RuntimeError(
            f"Keras runs on {keras.config.backend()!r} in this process, not "
            f"{backend!r}: KERAS_BACKEND must be set before keras is imported"
        )
    if backend == "tensorflow":
        from committee.training.device import configure_tensorflow

        configure_tensorflow(threads=threads)
    else:
        # Keras imports TensorFlow wherever it is installed (to seed it, to recognise its
        # shapes when saving): seconds and memory per worker, for nothing on this backend.
        from keras.src.utils import module_utils

        module_utils.tensorflow._available = False


def device_kind() -> str:
    """What this process's backend computes on: the first GPU's name, else "cpu"."""
    from committee.training.device import gpu_names

    names = gpu_names()
    return names[0] if names else "cpu"
