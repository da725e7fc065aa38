"""Ray Tune search of each member's hyper-parameters, then the committee from the winners.

Orchestration layer (Ray code). For each member, one Tune experiment whose trials are Ray
Train runs of that member (``train_loop_per_worker``, reporting every epoch through
``TuneReportCallback``); the member's default configuration is always the first trial.
ASHA (or FIFO) decides on validation accuracy, reported every epoch.

The search sees only the training and validation arrays: :func:`search` takes a
:class:`~committee.data.fashion_mnist.Split` and nothing else of the data. The test set enters in
:func:`finalize`, after every selection is made, to score default and tuned committees.

This module returns data (ResultGrids, summaries, scores, :func:`trials_table`,
:func:`trial_histories`); ``report.write_search`` writes them.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from committee.distributed.cluster import (
    Placement,
    floor_resource,
    plan_placement,
    scoped_environ,
)
from committee.distributed.driver import (
    member_trainer,
    predict_task,
    put_split,
    score_task,
)
from committee.distributed.worker import MemberJob
from committee.errors import SearchError, one_line
from committee.log import logger, plural
from committee.members import spec as members_mod
from committee.members.architectures import ARCHITECTURES
from committee.members.spec import MemberSpec
from committee.rundir.storage import split_location

SCHEDULERS = ("asha", "fifo")
METRIC = "val_accuracy"


def to_tune_space(space: dict[str, tuple]) -> dict[str, Any]:
    from ray import tune

    kinds = {
        "loguniform": tune.loguniform,
        "uniform": tune.uniform,
        "choice": tune.choice,
        "randint": tune.randint,
    }
    return {key: kinds[entry[0]](*entry[1:]) for key, entry in space.items()}


def default_config(spec: MemberSpec, space: dict[str, tuple]) -> dict[str, Any]:
    """The member's own values for every searched key (evaluated as the first trial)."""
    config = {}
    for key in space:
        name = members_mod.split_arch_key(key)
        if name is not None:
            import inspect

            param = inspect.signature(ARCHITECTURES[spec.architecture]).parameters
            config[key] = spec.arch_params.get(name, param[name].default)
        else:
            config[key] = getattr(spec, key)
    return config


def is_default(config: dict[str, Any], default: dict[str, Any]) -> bool:
    """Whether a trial's ``config`` is the member's default configuration."""
    return all(config.get(k) == v for k, v in default.items())


def member_space(spec: MemberSpec, epochs: int | None) -> dict[str, tuple]:
    """The declared space; a fixed ``--epochs`` replaces the searched epoch ceiling."""
    space = dict(members_mod.SEARCH_SPACES[spec.name])
    if epochs is not None:
        space.pop("epochs", None)
    members_mod.validate_space(spec, space)
    return space


def _scheduler(name: str, max_t: int, default: dict[str, Any]):
    """FIFO, or ASHA on validation accuracy that never stops the default configuration: its
    results still set the rungs' cut-offs, but it runs to its end, so the report compares
    the tuned member with the fully trained default one."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    class KeepDefaultASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if is_default(trial.config, default):
                return TrialScheduler.CONTINUE
            return decision

    if name == "asha":
        return KeepDefaultASHA(
            time_attr="training_iteration",
            max_t=max(1, max_t),
            grace_period=2 if max_t >= 4 else 1,
            reduction_factor=2,
        )
    return FIFOScheduler()


# A search saved before the package was split into subpackages names this module by its
# former path in its pickled state (the scheduler's class), which Tune unpickles on restore.
FORMER_MODULES = {"committee.tuning": "committee.distributed.tuning"}


@contextlib.contextmanager
def _former_module_names():
    """Make each module of :data:`FORMER_MODULES` importable by its former name too, for the
    block (Tune's restore of a search saved before the move)."""
    added = [old for old in FORMER_MODULES if old not in sys.modules]
    for old in added:
        sys.modules[old] = importlib.import_module(FORMER_MODULES[old])
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)


def search(
    spec: MemberSpec,
    space: dict[str, tuple],
    split,
    experiment_dir: str | Path,
    *,
    num_samples: int,
    max_concurrent: int,
    scheduler: str,
    time_budget_s: float | None,
    seed: int,
    placement: Placement,
    steps_per_execution: int,
    verbose: bool = False,
    backend: str = "tensorflow",
):
    """Run (or resume) one member's Tune experiment; return its ResultGrid.

    ``split`` holds the training and validation arrays only. ``experiment_dir``: a local
    folder or a URI (:func:`committee.rundir.storage.experiment_location`); the trials' Ray
    Train runs are kept in its ``trials`` subfolder. Unless ``verbose``, Tune's tables give
    way to one line per trial result (:func:`_trial_lines`). ``backend``: Keras' backend in
    every trial's worker.
    """
    from ray import tune
    from ray.train import CheckpointConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    data_ref = put_split(split)
    path, parent, name = split_location(experiment_dir)
    trials_storage = f"{path}/trials"

    def trainable(config: dict[str, Any]) -> None:
        trial_spec = members_mod.apply_config(spec, config)
        job = MemberJob(
            spec=trial_spec,
            data=data_ref,
            seed=seed,
            threads=placement.threads,
            steps_per_execution=steps_per_execution,
            backend=backend,
        )
        trainer = member_trainer(
            job,
            placement,
            name=tune.get_context().get_trial_id(),
            storage_path=trials_storage,
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],
        )
        trainer.fit()

    fn = tune.with_resources(trainable, {"cpu": TRIAL_CPU})
    if tune.Tuner.can_restore(path):
        logger.info(f"{spec.name}: resuming the search in {path}")
        with _former_module_names():
            tuner = tune.Tuner.restore(path, trainable=fn, resume_errored=True)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        max_epochs = max([spec.epochs] + list(space.get("epochs", (None, []))[1]))
        default = default_config(spec, space)
        tuner = tune.Tuner(
            fn,
            param_space=to_tune_space(space),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                num_samples=num_samples,
                time_budget_s=time_budget_s,
                scheduler=_scheduler(scheduler, max_epochs, default),
                # the generator itself caps concurrency (TuneConfig's cap is ignored with it)
                search_alg=BasicVariantGenerator(
                    points_to_evaluate=[default], random_state=seed, max_concurrent=max_concurrent
                ),
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=parent,
                verbose=2 if verbose else 0,
                callbacks=[] if verbose else [_trial_lines(spec.name)],
            ),
        )
    logger.info(
        f"{spec.name}: searching {plural(num_samples, 'configuration')} ({scheduler}, up to "
        f"{max_concurrent} at once)"
    )
    # Tune's own SIGINT handler would end the search quietly and return, as if it had
    # finished with no results; left to the command's, Ctrl-C stops the search as SIGTERM does
    # (one line, 130), and a rerun resumes from Tune's last saved experiment state.
    env = {"TUNE_DISABLE_SIGINT_HANDLER": "1"}
    if not verbose:
        env["RAY_AIR_NEW_OUTPUT"] = "0"  # the new output prints its tables even at verbose=0
    with scoped_environ(env):
        return tuner.fit()


def _trial_lines(member: str):
    """A Tune callback printing one plain line per trial result, in place of Tune's tables."""
    from ray.tune import Callback

    class TrialLines(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            config = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in trial.config.items()
            )
            logger.info(
                f"{member}: trial {trial.trial_id} epoch {result.get('epoch', '?')}: "
                f"{METRIC} {result.get(METRIC, float('nan')):.4f} ({config})"
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            logger.info(f"{member}: trial {trial.trial_id} failed; see {trial.local_path}")

    return TrialLines()


def summarize(
    spec: MemberSpec, space: dict, grid, time_budget_s: float | None = None
) -> dict[str, Any]:
    """Best and default trials of one member's search (by last reported val accuracy).

    Raises :class:`SearchError` when a time budget ended before any trial reported a
    validation accuracy, RuntimeError (naming the first trial's error) when every trial
    failed."""
    ok = [r for r in grid if r.metrics and METRIC in r.metrics and r.error is None]
    if not ok:
        errored = sum(1 for r in grid if r.error is not None)
        if time_budget_s is not None and errored < len(list(grid)):
            raise SearchError(
                f"no trial of {spec.name} finished an epoch within --time-budget-s "
                f"{time_budget_s:g}; expected a budget of at least one epoch plus start-up "
                f"(tens of seconds to minutes): raise --time-budget-s and rerun with --overwrite"
            )
        first = next((r.error for r in grid if r.error is not None), None)
        raise RuntimeError(
            f"no trial of {spec.name} reported {METRIC}"
            + ("" if first is None else f": {one_line(first, 300, pick='last', empty='')}")
        )
    best = max(ok, key=lambda r: r.metrics[METRIC])
    default = default_config(spec, space)
    baseline = next((r for r in ok if is_default(r.config, default)), None)
    return {
        "best_config": {k: best.config[k] for k in space},
        "best_val_accuracy": float(best.metrics[METRIC]),
        "best_epochs": int(best.metrics.get("epoch", 0)),
        "best_checkpoint": best.metrics.get("checkpoint_path"),
        "default_config": default,
        "default_val_accuracy": None if baseline is None else float(baseline.metrics[METRIC]),
        "default_epochs": None if baseline is None else int(baseline.metrics.get("epoch", 0)),
        "default_checkpoint": None if baseline is None else baseline.metrics.get("checkpoint_path"),
        "trials": len(list(grid)),
        "errored": sum(1 for r in grid if r.error is not None),
        "tta": spec.tta,
    }


def trials_table(grids: dict[str, Any]):
    """Every trial of every member as one pyarrow Table (config and last metrics)."""
    import pandas as pd
    import pyarrow as pa

    frames = []
    for name, grid in grids.items():
        frame = grid.get_dataframe()
        frame = frame.drop(columns=["member"], errors="ignore")  # also a reported metric
        frame.insert(0, "member", name)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return pa.Table.from_pandas(frame, preserve_index=False)


def trial_histories(grids: dict[str, Any]) -> dict[str, list[tuple[list, list]]]:
    """Each member's trials as ``(running seconds, validation accuracy)`` lists, one entry
    per reported epoch; trials that reported no validation accuracy are left out."""
    curves = {}
    for name, grid in grids.items():
        frames = [result.metrics_dataframe for result in grid]
        curves[name] = [
            (frame["time_total_s"].tolist(), frame[METRIC].tolist())
            for frame in frames
            if frame is not None and METRIC in frame
        ]
    return curves


def finalize(
    summaries: dict[str, dict],
    split,
    x_test: np.ndarray,
    y_test: np.ndarray,
    placement: Placement,
    backend: str = "tensorflow",
) -> dict[str, Any]:
    """Score the default and the tuned committees on the test set (after all selection),
    predicting on Keras' ``backend``."""
    import ray
    from ray.train import Checkpoint

    data_ref = ray.put({"x_val": split.x_val})
    test_ref = ray.put({"x_test": x_test})
    predict, score = predict_task(placement, backend), score_task(placement)
    out = {}
    for which in ("default", "best"):
        names = [n for n, s in summaries.items() if s[f"{which}_checkpoint"]]
        preds = [
            predict.remote(
                Checkpoint(summaries[n][f"{which}_checkpoint"]),
                data_ref,
                test_ref,
                placement.threads,
                summaries[n]["tta"],
                backend,
            )
            for n in names
        ]
        scores, _ = ray.get(score.remote(names, y_test, split.y_val, *preds))
        out["tuned" if which == "best" else "default"] = scores
    return out


TRIAL_CPU = 0.01  # what each trial's own (driver) process reserves besides its Train worker


def trial_cpus(nodes: list[dict[str, float]], concurrent: int) -> float:
    """CPUs for each trial's Train worker so that ``concurrent`` trials fit at once.

    Every running trial also holds TRIAL_CPU; asking 1 CPU per worker for 2 trials on
    2 CPUs would leave one trial's worker waiting forever.
    """
    total = sum(n.get("CPU", 0.0) for n in nodes)
    return floor_resource(total / concurrent - TRIAL_CPU)


def plan_trials(
    nodes: list[dict[str, float]],
    num_samples: int,
    max_concurrent: int | None,
    cpus: float | None,
    gpus: float | None,
) -> tuple[Placement, int]:
    """``(placement, concurrency)``: each trial's Train worker's resources and how many trials
    run at once.

    ``nodes``: each alive node's total resources (cluster.cluster_nodes). ``max_concurrent``:
    default one trial per CPU, at most ``num_samples``; ``cpus``: default
    :func:`trial_cpus`; ``gpus``: as cluster.plan_placement. Raises ValueError (one line naming
    the options to change) when that many trials cannot run at once, or no node hosts one.
    """
    total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
    concurrency = max_concurrent or max(1, min(num_samples, int(total_cpu)))
    cpus = cpus or trial_cpus(nodes, concurrency)
    if concurrency * (cpus + TRIAL_CPU) > total_cpu + 1e-9:
        raise ValueError(
            f"--max-concurrent {plural(concurrency, 'trial')} of {cpus:g} CPU (+ "
            f"{TRIAL_CPU} each for the trial) need more than the "
            f"cluster's {total_cpu:g} CPUs; lower one of them"
        )
    return plan_placement(1, nodes, cpus, gpus), concurrency
