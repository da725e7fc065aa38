"""Ray Data batch inference of a saved committee's members (``committee predict``).

Orchestration layer (Ray code): one ``map_batches`` stage per member, an actor pool of one
actor each, the stages streaming batches into one another so that all members run at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

import numpy as np

from committee.data.fashion_mnist import NUM_CLASSES
from committee.distributed.cluster import Placement
from committee.errors import MemberLoadError
from committee.training import backend as backends


def _member_load_error(exc: BaseException) -> MemberLoadError | None:
    """The :class:`MemberLoadError` inside a Ray (Data) error, or None. Ray wraps an actor's
    error in its own types (``cause``, ``__cause__``) and sometimes only in their text."""
    import re

    stack, seen = [exc], set()
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, MemberLoadError):
            return MemberLoadError(str(error))
        stack += [error.__cause__, error.__context__, getattr(error, "cause", None)]
    found = re.search(r"MemberLoadError: (models/.*)", str(exc))
    return MemberLoadError(found.group(1)) if found else None


class MemberPredictor:
    """Ray Data callable class: one member's model, loaded once per actor of its pool.

    ``model_bytes``: the member's ``.keras`` file (sent by value, so a node that cannot see
    the run folder can still load it), written to a private temporary file and loaded in
    Keras' safe mode. ``tta``: the member's test-time augmentation (prediction.tta_views).
    ``backend``: Keras' backend of this actor (its process starts with backend.process_env).
    """

    def __init__(
        self,
        name: str,
        model_bytes: bytes,
        tta: str,
        threads: int,
        backend: str = backends.DEFAULT,
    ):
        from committee.training.prediction import load_member

        backends.configure(backend, threads=threads)
        self.model = load_member(name, model_bytes)
        self.column, self.tta = f"{name}_proba", tta

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch["data"]``: float32 ``(b, 28, 28)``; adds this member's float32 ``(b, 10)``
        probabilities as column ``<name>_proba`` and passes every other column on."""
        from committee.training.prediction import predict_proba

        x = np.asarray(batch["data"], dtype=np.float32)[..., np.newaxis]  # (b, 28, 28, 1)
        return {**batch, self.column: predict_proba(self.model, x, tta=self.tta)}


@contextlib.contextmanager
def _native_stderr_to_file():
    """For the block, what Ray's C++ core worker writes to this process's stderr (file
    descriptor 2) goes to ``committee-predict-driver.err`` in Ray's session log folder (else
    a temporary file) instead of the terminal; Python's ``sys.stderr`` (the project's lines,
    Ray Data's progress bars on a terminal) still reaches the terminal. Ray Data passes its
    actors' constructor arguments through the object store and lets them restart, for which
    the core worker prints an ERROR line (core_worker.cc, ``MapWorker(MapBatches(...))``,
    ray-project/ray#53727) on every prediction: a warning about Ray Data, not about the run.
    Python's ``sys.stdout`` goes to the same file: the command prints nothing there while it
    predicts, and Ray's driver prints there each error the raylet reports (an actor that
    failed to start and is retried: the whole remote traceback, some 90 lines, repeating the
    one line the command reports)."""
    folder = tempfile.gettempdir()
    with contextlib.suppress(Exception):  # Ray's private API: fall back to a temporary file
        import ray

        folder = ray._private.worker._global_node.get_logs_dir_path()
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = os.fdopen(os.dup(saved), "w", buffering=1, errors="backslashreplace")
    native = os.open(
        os.path.join(folder, "committee-predict-driver.err"),
        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
        0o600,
    )
    sys.stdout.flush()
    python_stdout = os.fdopen(os.dup(native), "w", buffering=1, errors="backslashreplace")
    os.dup2(native, 2)
    previous = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = python_stdout, python_stderr
    try:
        yield
    finally:
        sys.stdout, sys.stderr = previous
        python_stdout.close()
        python_stderr.close()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(native)


@contextlib.contextmanager
def _ray_data_console(level: int = logging.CRITICAL):
    """Ray Data logs each execution's start, plan and end at INFO, warnings about its own
    settings ("Progress bars disabled" whenever the output is not a terminal), and an
    actor's failure at ERROR with Ray's tracebacks, on the driver's terminal; for the block
    the console handlers of Ray's loggers (``ray``, ``ray.data``) show ``level`` and above,
    its log files (Ray's session logs) everything. A failure also comes back as the
    exception :func:`predict_members` raises, which the command reports in one line."""
    handlers = [
        h
        for name in ("ray", "ray.data")
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    saved = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(max(handler.level, level))
    try:
        yield
    finally:
        for handler, old in zip(handlers, saved):
            handler.setLevel(old)


def predict_members(
    images: np.ndarray,
    members: dict[str, tuple[bytes, str]],
    placement: Placement,
    batch_size: int = 1024,
    backend: str | None = None,
) -> dict[str, np.ndarray]:
    """Every member's probabilities of ``images`` (float32 ``(n, 28, 28)`` in [0, 1]) by Ray
    Data batch inference: one ``map_batches`` stage per member, each an actor pool of one
    actor with the member's share of the cluster (``placement``), the stages streaming
    batches into one another so that all members run at once.

    ``members``: name -> (``.keras`` file bytes, TTA mode). Returns name -> float32
    ``(n, 10)``, rows in the order of ``images``. ``backend``: Keras' backend of the actors
    (default: ``KERAS_BACKEND``, else TensorFlow). Raises :class:`MemberLoadError` (a
    ValueError, one line starting with ``models/<name>.keras``) when a member's file does not
    load, is not a model of 28x28 images into 10 probabilities, or gives rows that are not
    probabilities.
    """
    import ray
    import ray.data

    backend = backends.resolve(backend)

    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True  # rows come back in the input order
    context.enable_progress_bars = sys.stderr.isatty()
    with _ray_data_console(), _native_stderr_to_file():
        try:
            dataset = ray.data.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
            for name, (model_bytes, tta) in members.items():
                dataset = dataset.map_batches(
                    MemberPredictor,
                    batch_format="numpy",
                    batch_size=batch_size,
                    fn_constructor_kwargs={
                        "name": name,
                        "model_bytes": model_bytes,
                        "tta": tta,
                        "threads": placement.threads,
                        "backend": backend,
                    },
                    compute=ray.data.ActorPoolStrategy(size=1),
                    runtime_env=placement.runtime_env(backend),
                    **placement.task_resources(),
                )
            columns = [f"{name}_proba" for name in members]
            batches = list(
                dataset.select_columns(columns).iter_batches(batch_format="numpy", batch_size=None)
            )
        except Exception as exc:
            load_error = _member_load_error(exc)
            if load_error is None:
                raise
            raise load_error from None
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
    probas = {
        name: np.concatenate([b[f"{name}_proba"] for b in batches]).astype(np.float32)
        for name in members
    }
    for name, proba in probas.items():
        if proba.shape != (len(images), NUM_CLASSES):
            raise RuntimeError(
                f"member {name} returned probabilities of shape {proba.shape}; "
                f"expected ({len(images)}, {NUM_CLASSES})"
            )
        _check_rows(name, proba)
    return probas


def _check_rows(name: str, proba: np.ndarray) -> None:
    """Raise :class:`MemberLoadError` (one line starting with ``models/<name>.keras``) unless
    every row of the member's float32 ``(n, 10)`` probabilities is finite, >= 0 and sums to
    1 (within :data:`~committee.training.prediction.ROW_SUM_TOLERANCE`): a model that passed
    its probe can still overflow on some images."""
    from committee.training.prediction import ROW_SUM_TOLERANCE

    bad = (
        ~np.isfinite(proba).all(axis=1)
        | (proba < 0).any(axis=1)
        | (np.abs(proba.sum(axis=1, dtype=np.float64) - 1) > ROW_SUM_TOLERANCE)
    )
    if bad.any():
        raise MemberLoadError(
            f"models/{name}.keras gave {bad.sum():,} of {len(proba):,} images (the first: "
            f"image {int(np.argmax(bad))}) probabilities that are not finite, >= 0 and "
            f"summing to 1; expected class probabilities (a softmax output)"
        )
