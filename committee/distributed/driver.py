"""The driver side of training, predicting and scoring the members on Ray.

The pieces it runs (``training``, ``ensemble``) work without Ray; ``worker`` is what runs in
the Ray processes, ``cluster`` connects and places, ``batch_inference`` predicts a saved
committee, ``tuning`` searches hyper-parameters.

Flow of :func:`run_members`::

    driver: data arrays --ray.put once--> object store
            one trainer per member (member_trainer: Ray Train's DataParallelTrainer),
              fit() from a thread each -> run concurrently
              worker: train_loop_per_worker({"job": MemberJob})
                      -> per-epoch ray.train.report(metrics, ckpt)
            one predict task per member (loads the final checkpoint) -> val/test probabilities
            one committee task gathers all probabilities -> scores (retried if its worker dies)
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from committee.distributed.cluster import Placement
from committee.distributed.worker import (
    MemberJob,
    phase_sender,
    predict_member,
    score_members,
    train_loop_per_worker,
)
from committee.errors import MemberDiverged, disk_full, no_space
from committee.log import logger, plural
from committee.members.spec import MemberSpec
from committee.members.tta import TTA_MODES
from committee.rundir.folder import make_folder
from committee.rundir.member_files import (
    MemberOutcome,
    load_finished_member,
    save_member,
)
from committee.training import backend as backends
from committee.training.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
)
from committee.training.state import TrainState

# --------------------------------------------------------------------------- worker side


# --------------------------------------------------------------------------- Ray tasks


def predict_task(placement: Placement, backend: str = backends.DEFAULT, **options):
    """:func:`predict_member` as a Ray task with a member's resources, in a process started
    for Keras' ``backend`` (``options``: more ``.options()``, e.g. ``max_retries``)."""
    import ray

    return ray.remote(predict_member).options(
        **placement.task_resources(), runtime_env=placement.runtime_env(backend), **options
    )


def member_trainer(job: MemberJob, placement: Placement, **run_config):
    """The Ray Train trainer of one member's ``job``: one worker with ``placement``'s
    resources, in a process started for the job's Keras backend (backend.process_env),
    running :func:`~committee.distributed.worker.train_loop_per_worker`; ``run_config``:
    RunConfig's arguments.

    Both backends get Ray Train's DataParallelTrainer with no framework set-up: one worker
    needs none. TensorflowTrainer only adds ``TF_CONFIG`` for multi-worker strategies, and
    ``ray.train.tensorflow`` imports TensorFlow in the driver and in every trainer's
    controller process (~5 CPU-seconds each on this project's 2-core machines). Ray's
    JaxTrainer would call ``jax.distributed.initialize``, needless for one worker, and on GPUs
    it counts whole GPUs (``range(num_gpus)``), which fractional GPUs (three members sharing
    one) break [ray/train/v2/jax/config.py].
    """
    from ray.train import RunConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    run_config = RunConfig(worker_runtime_env=placement.runtime_env(job.backend), **run_config)
    return DataParallelTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=placement.scaling_config(),
        run_config=run_config,
    )


def score_task(placement: Placement):
    """:func:`score_members` as a Ray task: at most one CPU, retried if its worker dies."""
    import ray

    return ray.remote(score_members).options(num_cpus=min(1.0, placement.cpus), max_retries=3)


# --------------------------------------------------------------------------- driver side


def put_split(split):
    """The training and validation arrays of ``split`` (data.Split) put in Ray's object store
    once: the ObjectRef of ``{"x_train", "y_train", "x_val", "y_val"}`` that
    :func:`train_loop_per_worker` reads as ``config["data"]`` (zero-copy)."""
    import ray

    return ray.put(
        {
            "x_train": split.x_train,
            "y_train": split.y_train,
            "x_val": split.x_val,
            "y_val": split.y_val,
        }
    )


STOPPING = threading.Event()  # set when the driver is interrupted


def run_concurrently(calls: list, poll_s: float = 0.5, on_tick=None) -> list:
    """Run each call in its own daemon thread; return their results in order.

    Waits in short joins so SIGINT/SIGTERM reach the main thread at once, and the threads
    (each blocked in a trainer's fit()) never keep an interrupted driver alive. The first
    failure is raised as soon as it happens. ``on_tick()`` runs between joins (the display).
    """
    results: list = [None] * len(calls)
    errors: list = []

    def target(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=target, args=(i,), daemon=True, name=f"member-{i}")
        for i in range(len(calls))
    ]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            if errors:
                raise errors[0]
            threads[[t.is_alive() for t in threads].index(True)].join(poll_s)
            if on_tick is not None:
                on_tick()
        if errors:  # the last call to end failed
            raise errors[0]
    except BaseException:
        STOPPING.set()  # threads still running must not save anything from here on
        raise
    return results


def _read_state(checkpoint, spec: MemberSpec) -> TrainState:
    """The state of a member's final checkpoint, checked against ``spec``'s epochs."""
    with checkpoint.as_directory() as folder:
        return TrainState.from_dict(
            json.loads((Path(folder) / STATE_FILE).read_text()), spec.epochs
        )


@contextlib.contextmanager
def _naming_a_full_disk(where: str, catching: type[BaseException] = OSError):
    """Re-raise a ``catching`` error of the block that says the disk is full as
    :func:`disk_full`'s one line (``where``: the folder written); any other as it is."""
    try:
        yield
    except catching as exc:
        if no_space(exc) is not None:
            raise disk_full(exc, where) from None
        raise


# --------------------------------------------------------------------------- run_members


def run_members(
    specs: list[MemberSpec],
    split,
    x_test: np.ndarray,
    y_test: np.ndarray,
    run_dir: Path,
    *,
    identity: dict,
    placement: Placement,
    storage: str,
    max_failures: int = 1,
    steps_per_execution: int = 1,
    time_budget_s: float | None = None,
    display=None,
    tensorboard: Path | None = None,
    backend: str = backends.DEFAULT,
) -> tuple[list[MemberOutcome], dict, dict[str, np.ndarray]]:
    """Train every member concurrently on Ray, predict, and score the committee.

    ``identity``: the run's (identity.run_identity); each member trains with its seed and is
    reused from an earlier run of the folder only if its own identity is unchanged.
    ``storage``: Ray Train's storage path or URI (:func:`committee.rundir.storage.storage_for`).
    ``time_budget_s``: each member's budget for training and predicting
    (see training.train_member). ``display``: a progress.Display the members' events go to
    (through a Ray queue); None leaves their output to Ray's log forwarding.
    ``tensorboard``: a folder where each member writes TensorBoard event files
    (``<tensorboard>/<member>``; on a multi-node cluster, a path every node shares).
    ``backend``: Keras' backend in every worker (backend.BACKENDS).

    Returns ``(outcomes, results, committee_probas)``. Raises :class:`MemberDiverged` when a
    member's loss stops being finite and :class:`DiskFull` when the storage fills up.
    """
    import ray
    from ray.util.queue import Queue

    STOPPING.clear()  # a process may run several jobs (a notebook, a service)
    progress = None if display is None else Queue(actor_options={"num_cpus": 0})

    def drain() -> None:
        if progress is not None:
            size = progress.qsize()
            for event in progress.get_nowait_batch(size) if size else []:
                display.event(event)

    run = _RunContext(
        run_dir=run_dir,
        identity=identity,
        placement=placement,
        storage=storage,
        max_failures=max_failures,
        steps_per_execution=steps_per_execution,
        time_budget_s=time_budget_s,
        progress=progress,
        tensorboard=tensorboard,
        backend=backend,
        data=put_split(split),
        test=ray.put({"x_test": x_test}),
        n_val=len(split.y_val),
        n_test=len(y_test),
        predict=predict_task(placement, backend, max_retries=2),
    )
    try:
        outcomes = run_concurrently(
            [lambda s=s: _train_and_predict(s, run) for s in specs], on_tick=drain
        )
    finally:
        with contextlib.suppress(Exception):  # the last lines, even after a failure
            drain()

    results, committee_probas = ray.get(
        score_task(placement).remote(
            [o.name for o in outcomes],
            y_test,
            split.y_val,
            *[ray.put({"val": o.val_proba, "test": o.test_proba}) for o in outcomes],
        )
    )
    return outcomes, results, committee_probas


@dataclass(frozen=True)
class _RunContext:
    """What every member of one :func:`run_members` call shares (its arguments, and the
    object-store references of the data)."""

    run_dir: Path
    identity: dict
    placement: Placement
    storage: str
    max_failures: int
    steps_per_execution: int
    time_budget_s: float | None
    progress: Any  # the display's Ray queue, or None
    tensorboard: Path | None
    backend: str
    data: Any  # ObjectRef of {"x_train", "y_train", "x_val", "y_val"}
    test: Any  # ObjectRef of {"x_test"}
    n_val: int
    n_test: int
    predict: Any  # predict_task(placement, ...)


def _train_and_predict(spec: MemberSpec, run: _RunContext) -> MemberOutcome:
    """One member: reused if an earlier run of the folder finished it, else trained on Ray
    Train (resuming from its checkpoints), its val/test probabilities predicted in a Ray
    task, and its files saved (member_files).

    Raises :class:`MemberDiverged`, :class:`DiskFull`, RuntimeError (the member failed), or
    KeyboardInterrupt when the driver was interrupted meanwhile (nothing is saved then).
    """
    import ray

    from committee.distributed import checkpoints

    member = run.identity["members"][spec.name]
    done = load_finished_member(run.run_dir, spec.name, member, run.n_val, run.n_test)
    if done is not None:
        logger.info(f"{spec.name}: finished in an earlier run of this folder, reusing it")
        return done
    member_storage = f"{run.storage.rstrip('/')}/{spec.name}"
    with _naming_a_full_disk(member_storage):
        checkpoints.repair(member_storage, log=lambda line: logger.info(f"{spec.name}: {line}"))
    trainer = _trainer(spec, member["seed"], member_storage, run)
    budget = "" if run.time_budget_s is None else f" within {run.time_budget_s / 60:g} min"
    logger.info(
        f"{spec.name}: training on Ray Train ({run.placement.describe()}, up to "
        f"{plural(spec.epochs, 'epoch')}{budget}, batch {spec.batch_size}, {spec.optimizer} lr "
        f"{spec.learning_rate:g}, seed {member['seed']})"
    )
    phase = phase_sender(run.progress, spec.name)
    phase("starting its Ray Train worker")
    with _naming_a_full_disk(member_storage, catching=Exception):
        result = trainer.fit()
    phase("predicting the validation and test images")
    checkpoint = _final_checkpoint(spec.name, result, member_storage)
    state = _read_state(checkpoint, spec)
    probs = ray.get(
        run.predict.remote(
            checkpoint, run.data, run.test, run.placement.threads, spec.tta, run.backend
        )
    )
    if STOPPING.is_set():  # interrupted meanwhile: leave the member to resume later
        raise KeyboardInterrupt
    with _naming_a_full_disk(str(run.run_dir)), checkpoint.as_directory() as folder:
        outcome = save_member(run.run_dir, spec, Path(folder) / MODEL_FILE, state, probs, member)
    planned = (
        ""
        if outcome.epochs_planned is None
        else f" (time budget: {outcome.epochs_planned} of {spec.epochs} planned)"
    )
    logger.info(
        f"{spec.name}: done after {plural(outcome.epochs_run, 'epoch')}{planned}"
        f"{' (early stop)' if outcome.stopped_early else ''}"
    )
    return outcome


def _trainer(spec: MemberSpec, seed: int, member_storage: str, run: _RunContext):
    """The member's trainer (:func:`member_trainer`): checkpoints in ``run.storage`` (two
    kept), restarted up to ``run.max_failures`` times."""
    from ray.train import CheckpointConfig, FailureConfig

    tensorboard = None
    if run.tensorboard is not None:  # TensorBoard writes by path: its folder made through the door
        folder = make_folder(run.run_dir, run.tensorboard.relative_to(run.run_dir) / spec.name)
        tensorboard = str(folder.resolve())
    job = MemberJob(
        spec=spec,
        data=run.data,
        seed=seed,
        threads=run.placement.threads,
        steps_per_execution=run.steps_per_execution,
        backend=run.backend,
        time_budget_s=run.time_budget_s,
        predict_images=TTA_MODES[spec.tta] * (run.n_val + run.n_test),
        member_storage=member_storage,
        tensorboard=tensorboard,
        progress=run.progress,
    )
    return member_trainer(
        job,
        run.placement,
        name=spec.name,
        storage_path=run.storage,
        failure_config=FailureConfig(max_failures=run.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
    )


def _final_checkpoint(name: str, result, member_storage: str):
    """The final checkpoint of a member's Ray Train ``result``. Raises :class:`MemberDiverged`
    (its loss stopped being finite), :class:`DiskFull`, or RuntimeError (it failed)."""
    diverged = (result.metrics or {}).get("diverged")
    if diverged:
        raise MemberDiverged(
            f"member {name} diverged in epoch {diverged['epoch']} at learning rate "
            f"{diverged['learning_rate']:g} (loss {diverged['loss']}); it was stopped and "
            f"not saved: lower --learning-rate and rerun with --overwrite"
        )
    if result.error is not None or result.checkpoint is None:
        if no_space(result.error) is not None:
            raise disk_full(result.error, member_storage)
        raise RuntimeError(f"member {name} failed: {result.error}")
    return result.checkpoint
