"""The worker side of a member's training on Ray: what runs inside a Ray Train worker or a Ray
task. The driver side (which trainers, tasks and data) is :mod:`committee.distributed.driver`.

One :class:`MemberJob` carries everything a member's worker needs; the driver of a run and
each trial of a search build it the same way and pass it as ``train_loop_config["job"]``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from committee import log
from committee.errors import CheckpointError, one_line
from committee.log import MEMBER, forwarding, logger
from committee.members.spec import MemberSpec
from committee.rundir import storage
from committee.training import backend as backends
from committee.training.checkpoint import MODEL_FILE, load_checkpoint, save_checkpoint
from committee.training.loop import train_member
from committee.training.state import TrainState, recent_pace


@dataclass(frozen=True)
class MemberJob:
    """One member's training job, as its Ray Train worker receives it.

    ``data``: the ObjectRef of ``{"x_train", "y_train", "x_val", "y_val"}`` (float32
    ``(n, 28, 28, 1)`` images, int labels ``(n,)``), put once in the object store by the
    driver. ``threads``: CPU threads the worker may use (its placement's). ``time_budget_s``
    and ``predict_images``: see :func:`committee.training.loop.train_member`.
    ``member_storage``: the member's checkpoint folder or URI, searched for an older
    checkpoint when Ray's latest does not load (None: only Ray's). ``tensorboard``: a folder
    for the member's event files (None: none). ``progress``: the driver's display queue
    (None: the worker prints its own lines, as under ``--verbose`` and in a search).
    """

    spec: MemberSpec
    data: Any
    seed: int
    threads: int | None
    steps_per_execution: int = 1
    backend: str = backends.DEFAULT
    time_budget_s: float | None = None
    predict_images: int = 0
    member_storage: str | None = None
    tensorboard: str | None = None
    progress: Any = None


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop for ONE member (``config["job"]``, a :class:`MemberJob`): resume if a
    checkpoint exists, report every epoch. Its log lines go to the worker's stdout and, unless
    verbose, to the driver's display."""
    job: MemberJob = config["job"]
    log.setup()
    progress = job.progress
    send = (
        None
        if progress is None
        else (
            lambda text: progress.put_nowait(
                {"member": job.spec.name, "kind": "line", "text": text}
            )
        )
    )
    with forwarding(send):
        _train_on_worker(job)


def phase_sender(progress, member: str):
    """A function that tells the driver's display (``progress``: its queue) what ``member``
    is doing now, e.g. "building the model"; does nothing without a display."""

    def send(text: str) -> None:
        if progress is not None:
            progress.put_nowait({"member": member, "kind": "phase", "text": text})

    return send


def _train_on_worker(job: MemberJob) -> None:
    import ray
    import ray.train

    spec, progress = job.spec, job.progress
    phase = phase_sender(progress, spec.name)
    phase(f"importing Keras on {job.backend}")
    backends.configure(job.backend, threads=job.threads)
    phase("loading the data")
    data = ray.get(job.data)  # zero-copy views of the arrays put once by the driver
    phase("looking for a checkpoint to resume from")
    resume = _load_resume_point(spec, ray.train.get_checkpoint(), job.member_storage)
    if resume is not None:
        logger.info(f"[{spec.name}] resuming after epoch {resume[1].epoch}", extra=MEMBER)

    reported, durations, last = [], [], [time.time()]

    def report(epoch: int, logs: dict, model, state: TrainState) -> None:
        metrics = {
            "member": spec.name,
            "epoch": epoch + 1,
            **logs,
            "stopped_early": state.stopped_early,
        }
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp, model, state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        reported.append(epoch)
        durations.append(time.time() - last[0])  # the epoch and its checkpoint
        last[0] = time.time()
        if progress is not None:
            progress.put_nowait(
                {
                    "member": spec.name,
                    "kind": "epoch",
                    "epoch": epoch + 1,
                    "planned": state.total_epochs(spec),
                    "seconds": recent_pace(durations),
                    "metrics": {k: float(v) for k, v in logs.items()},
                }
            )

    model, state = train_member(
        spec,
        data["x_train"],
        data["y_train"],
        data["x_val"],
        data["y_val"],
        seed=job.seed,
        resume=resume,
        on_epoch_end=report,
        steps_per_execution=job.steps_per_execution,
        time_budget_s=job.time_budget_s,
        predict_images=job.predict_images,
        verbose=0 if progress is not None else 2,
        callbacks=_tensorboard(job.tensorboard),
        on_phase=phase,
    )
    if state.diverged is not None:  # the non-finite weights are never saved
        # Ray Train's result carries only metrics reported with a checkpoint, so the news
        # goes with one holding nothing but the record (checkpoints.repair drops it later).
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "diverged.json").write_text(json.dumps(state.diverged))
            ray.train.report(
                {"member": spec.name, "epoch": state.diverged["epoch"], "diverged": state.diverged},
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
            )
    elif resume is not None and not reported:  # resumed after its last epoch: record that
        report(state.epoch - 1, {k: v[-1] for k, v in state.history.items()}, model, state)


def _tensorboard(folder: str | None) -> list:
    """A TensorBoard callback writing to ``folder``, if given: losses, metrics, the learning
    rate and the time budget's planned epochs, per epoch."""
    if not folder:
        return []
    from committee.training.tensorboard import tensorboard_callback

    return [tensorboard_callback(folder)]


def _load_resume_point(spec: MemberSpec, checkpoint, member_storage: str | None):
    """``(model, state)`` from the newest checkpoint that loads (its state within the range
    ``spec`` allows), or None to start afresh.

    Tries Ray's latest checkpoint, then every other checkpoint folder in the member's storage
    newest first (Ray keeps two; a torn or refused newest one falls back to the one before,
    and a snapshot file removed by checkpoints.repair still leaves them to resume from). Each
    one that fails is named in one warning line."""
    import ray.train

    from committee.distributed import checkpoints

    name = spec.name
    candidates = [] if checkpoint is None else [checkpoint]
    if member_storage:
        fs, member_dir = storage.filesystem(member_storage)
        seen = {c.path for c in candidates}
        candidates += [
            ray.train.Checkpoint(path, filesystem=fs)
            for path in checkpoints.checkpoint_paths(fs, member_dir)
            if path not in seen
        ]
    for candidate in candidates:
        try:
            with candidate.as_directory() as folder:
                return load_checkpoint(folder, max_epochs=spec.epochs)
        except CheckpointError as exc:  # one of its files: named
            _skipped(name, f"{candidate.path}/{exc.file}", exc.cause)
        except Exception as exc:  # noqa: BLE001 - the folder itself could not be fetched
            _skipped(name, candidate.path, exc)
    if candidates:
        logger.warning(
            f"[{name}] warning: no checkpoint could be loaded; training from the start",
            extra=MEMBER,
        )
    return None


def _skipped(name: str, what: str, cause: BaseException) -> None:
    logger.warning(
        f"[{name}] warning: checkpoint {what} could not be loaded "
        f"({type(cause).__name__}: {one_line(cause, 200, pick='last')}); trying an older one",
        extra=MEMBER,
    )


def predict_member(
    checkpoint,
    data: dict,
    test: dict,
    threads: int,
    tta: str = "none",
    backend: str = backends.DEFAULT,
) -> dict[str, np.ndarray]:
    """Ray task body: load a member's final checkpoint; return its val and test probabilities
    (``tta``: the views averaged, see prediction.tta_views), on Keras' ``backend``."""
    from committee.training.prediction import load_model, predict_proba

    backends.configure(backend, threads=threads)
    with checkpoint.as_directory() as folder:
        model = load_model(Path(folder) / MODEL_FILE)
    return {
        "val": predict_proba(model, data["x_val"], tta=tta),
        "test": predict_proba(model, test["x_test"], tta=tta),
    }


def score_members(names: list[str], y_test, y_val, *predictions) -> tuple[dict, dict]:
    """Ray task body: the committee. Pure function of its inputs, so retrying it is safe."""
    from committee.ensemble.scoring import score_committee

    test = {n: p["test"] for n, p in zip(names, predictions)}
    val = {n: p["val"] for n, p in zip(names, predictions)}
    return score_committee(test, y_test, val, y_val)
