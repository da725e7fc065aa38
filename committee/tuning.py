"""Ray Tune search of each member's hyper-parameters, then the committee from the winners.

Orchestration layer (Ray code). For each member, one Tune experiment whose trials are Ray
Train runs of that member (``train_loop_per_worker``, reporting every epoch through
``TuneReportCallback``); the member's default configuration is always the first trial.
ASHA (or FIFO) decides on validation accuracy, reported every epoch.

The search sees only the training and validation arrays: :func:`search` takes a
:class:`~committee.data.Split` and nothing else of the data. The test set enters in
:func:`finalize`, after every selection is made, to score default and tuned committees.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from committee import members as members_mod
from committee import runfolder
from committee.architectures import ARCHITECTURES
from committee.errors import CommitteeError
from committee.members import MemberSpec
from committee.orchestration import Placement, _predict, _score, log, train_loop_per_worker

SCHEDULERS = ("asha", "fifo")
METRIC = "val_accuracy"


def to_tune_space(space: dict[str, tuple]) -> dict[str, Any]:
    from ray import tune
    kinds = {"loguniform": tune.loguniform, "uniform": tune.uniform,
             "choice": tune.choice, "randint": tune.randint}
    return {key: kinds[entry[0]](*entry[1:]) for key, entry in space.items()}


def default_config(spec: MemberSpec, space: dict[str, tuple]) -> dict[str, Any]:
    """The member's own values for every searched key (evaluated as the first trial)."""
    config = {}
    for key in space:
        if key.startswith("arch."):
            import inspect
            param = inspect.signature(ARCHITECTURES[spec.architecture]).parameters
            config[key] = spec.arch_params.get(key[5:], param[key[5:]].default)
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
        return KeepDefaultASHA(time_attr="training_iteration", max_t=max(1, max_t),
                               grace_period=2 if max_t >= 4 else 1, reduction_factor=2)
    return FIFOScheduler()


def experiment_location(run_dir: Path, member: str, storage: str | None = None,
                        instance: str | None = None) -> str:
    """Where ``member``'s Tune experiment lives: ``<run_dir>/tune/<member>`` by default, else
    ``<storage>/<run name>/<instance>/tune/<member>`` (the run's storage as
    :func:`~committee.orchestration.storage_for` lays it out), so that on a multi-node
    cluster every trial writes to storage all nodes share. Raises ValueError when a storage
    is given without the run's ``instance`` id."""
    from committee.orchestration import storage_for
    if storage is None:
        return str((Path(run_dir) / "tune" / member).resolve())
    if not instance:
        raise ValueError(f"storage {storage!r} needs the run's instance id; got {instance!r}")
    return f"{storage_for(Path(run_dir), storage, instance)}/tune/{member}"


def _split_location(experiment: str | Path) -> tuple[str, str, str]:
    """``(experiment, parent, name)`` of a local folder (resolved) or a URI such as s3://…"""
    experiment = str(experiment)
    if "://" not in experiment:
        experiment = str(Path(experiment).expanduser().resolve())
    experiment = experiment.rstrip("/")
    parent, _, name = experiment.rpartition("/")
    return experiment, parent, name


def search(spec: MemberSpec, space: dict[str, tuple], split, experiment_dir: str | Path, *,
           num_samples: int, max_concurrent: int, scheduler: str, time_budget_s: float | None,
           seed: int, placement: Placement, steps_per_execution: int, verbose: bool = False):
    """Run (or resume) one member's Tune experiment; return its ResultGrid.

    ``split`` holds the training and validation arrays only. ``experiment_dir``: a local
    folder or a URI (:func:`experiment_location`); the trials' Ray Train runs are kept in its
    ``trials`` subfolder. Unless ``verbose``, Tune's tables give way to one line per trial
    result (:func:`_trial_lines`).
    """
    import ray
    from ray import tune
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    from committee.orchestration import quiet_stderr
    with quiet_stderr(not verbose):  # it imports TensorFlow
        from ray.train.tensorflow import TensorflowTrainer

    data_ref = ray.put({"x_train": split.x_train, "y_train": split.y_train,
                        "x_val": split.x_val, "y_val": split.y_val})
    path, parent, name = _split_location(experiment_dir)
    trials_storage = f"{path}/trials"

    def trainable(config: dict[str, Any]) -> None:
        trial_spec = members_mod.apply_config(spec, config)
        trainer = TensorflowTrainer(
            train_loop_per_worker=train_loop_per_worker,
            train_loop_config={"spec": trial_spec.to_dict(), "data": data_ref, "seed": seed,
                               "threads": placement.threads,
                               "steps_per_execution": steps_per_execution},
            scaling_config=ScalingConfig(
                num_workers=1, use_gpu=placement.use_gpu,
                resources_per_worker={"CPU": placement.cpus,
                                      **({"GPU": placement.gpus} if placement.use_gpu else {})}),
            run_config=RunConfig(name=tune.get_context().get_trial_id(),
                                 storage_path=trials_storage,
                                 checkpoint_config=CheckpointConfig(num_to_keep=1),
                                 callbacks=[TuneReportCallback()]),
        )
        trainer.fit()

    fn = tune.with_resources(trainable, {"cpu": TRIAL_CPU})
    if tune.Tuner.can_restore(path):
        log(f"{spec.name}: resuming the search in {path}")
        tuner = tune.Tuner.restore(path, trainable=fn, resume_errored=True)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator
        max_epochs = max([spec.epochs] + list(space.get("epochs", (None, []))[1]))
        default = default_config(spec, space)
        tuner = tune.Tuner(
            fn,
            param_space=to_tune_space(space),
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="max", num_samples=num_samples,
                time_budget_s=time_budget_s,
                scheduler=_scheduler(scheduler, max_epochs, default),
                # the generator itself caps concurrency (TuneConfig's cap is ignored with it)
                search_alg=BasicVariantGenerator(
                    points_to_evaluate=[default], random_state=seed,
                    max_concurrent=max_concurrent)),
            run_config=tune.RunConfig(name=name, storage_path=parent,
                                      verbose=2 if verbose else 0,
                                      callbacks=[] if verbose else
                                      [_trial_lines(spec.name)]),
        )
    log(f"{spec.name}: searching {num_samples} configurations ({scheduler}, up to "
        f"{max_concurrent} at once)")
    if verbose:
        return tuner.fit()
    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the new output prints its tables even at verbose=0
    try:
        return tuner.fit()
    finally:
        if saved is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved


class SearchError(CommitteeError):
    """A search that cannot give a result as configured; the message says what to change."""


def _trial_lines(member: str):
    """A Tune callback printing one plain line per trial result, in place of Tune's tables."""
    from ray.tune import Callback

    class TrialLines(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            config = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in trial.config.items())
            log(f"{member}: trial {trial.trial_id} epoch {result.get('epoch', '?')}: "
                f"{METRIC} {result.get(METRIC, float('nan')):.4f} ({config})")

        def on_trial_error(self, iteration, trials, trial, **info):
            log(f"{member}: trial {trial.trial_id} failed; see {trial.local_path}")

    return TrialLines()


def summarize(spec: MemberSpec, space: dict, grid,
              time_budget_s: float | None = None) -> dict[str, Any]:
    """Best and default trials of one member's search (by last reported val accuracy).

    Raises :class:`SearchError` when no trial reported a validation accuracy (a time budget
    that ended before any trial finished its first epoch, or every trial failed)."""
    ok = [r for r in grid if r.metrics and METRIC in r.metrics and r.error is None]
    if not ok:
        errored = sum(1 for r in grid if r.error is not None)
        if time_budget_s is not None and errored < len(list(grid)):
            raise SearchError(
                f"no trial of {spec.name} finished an epoch within --time-budget-s "
                f"{time_budget_s:g}; expected a budget of at least one epoch plus start-up "
                f"(tens of seconds to minutes): raise --time-budget-s and rerun with --overwrite")
        first = next((r.error for r in grid if r.error is not None), None)
        raise RuntimeError(f"no trial of {spec.name} reported {METRIC}"
                           + ("" if first is None else
                              f": {str(first).strip().splitlines()[-1][:300]}"))
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


def trial_curves(grids: dict[str, Any], path: Path) -> Path:
    """Validation accuracy of every trial over its running time, one panel per member."""
    from committee import figures
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(grids), figsize=(5.5 * len(grids), 4), squeeze=False)
    for ax, (name, grid) in zip(axes[0], grids.items()):
        for result in grid:
            history = result.metrics_dataframe
            if history is None or METRIC not in history:
                continue
            ax.plot(history["time_total_s"], history[METRIC], marker="o", ms=3, alpha=0.8)
        ax.set_title(f"{name}: trials")
        ax.set_xlabel("trial time (s)")
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return figures.save(fig, path)


def finalize(summaries: dict[str, dict], split, x_test: np.ndarray, y_test: np.ndarray,
             placement: Placement) -> dict[str, Any]:
    """Score the default and the tuned committees on the test set (after all selection)."""
    import ray
    from ray.train import Checkpoint

    data_ref = ray.put({"x_val": split.x_val})
    test_ref = ray.put({"x_test": x_test})
    predict = ray.remote(_predict).options(num_cpus=placement.cpus, num_gpus=placement.gpus)
    score = ray.remote(_score).options(num_cpus=min(1.0, placement.cpus), max_retries=3)
    out = {}
    for which in ("default", "best"):
        names = [n for n, s in summaries.items() if s[f"{which}_checkpoint"]]
        preds = [predict.remote(Checkpoint(summaries[n][f"{which}_checkpoint"]), data_ref,
                                test_ref, placement.threads, summaries[n]["tta"])
                 for n in names]
        scores, _ = ray.get(score.remote(names, y_test, split.y_val, *preds))
        out["tuned" if which == "best" else "default"] = scores
    return out


def comparison_markdown(summaries: dict[str, dict], scores: dict[str, Any], meta: dict) -> str:
    lines = [f"# Hyper-parameter search `{meta['name']}`", "",
             f"{meta['num_samples']} configurations per member ({meta['scheduler']}), the "
             f"default configuration among them; objective validation accuracy on "
             f"{meta['n_val']:,} validation images. The test set was used only after selection.",
             "", "| model | default val acc | tuned val acc | default test acc | tuned test acc "
             "| best configuration |", "|---|---|---|---|---|---|"]

    def acc(which, name, key="accuracy"):
        block = scores.get(which, {}).get("members", {}).get(name)
        return "–" if block is None or key not in block else f"{block[key]:.4f}"

    for name, s in summaries.items():
        config = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in s["best_config"].items())
        lines.append(f"| {name} | {acc('default', name, 'val_accuracy')} | "
                     f"{acc('tuned', name, 'val_accuracy')} | {acc('default', name)} | "
                     f"{acc('tuned', name)} | {config} |")
    for rule in ("mean", "weighted", "geometric"):
        cells = []
        for which in ("default", "tuned"):
            block = scores.get(which, {}).get("committee", {}).get(rule)
            cells.append(("–", "–") if block is None else
                         (f"{block.get('val_accuracy', float('nan')):.4f}",
                          f"{block['accuracy']:.4f}"))
        lines.append(f"| **committee ({rule})** | {cells[0][0]} | {cells[1][0]} | "
                     f"{cells[0][1]} | {cells[1][1]} | |")
    lines += ["", "Trials: `trials.parquet`; curves: `figures/trials.png`; best configurations: "
              "`best_configs.json`.", ""]
    return "\n".join(lines)


def write_outputs(run_dir: Path, summaries, grids, scores, meta) -> None:
    from committee.report import write_predictions  # parquet writer, atomic
    runfolder.write_json(run_dir / "best_configs.json",
                         {n: s["best_config"] for n, s in summaries.items()})
    write_predictions(run_dir / "trials.parquet", trials_table(grids))
    trial_curves(grids, run_dir / "figures" / "trials.png")
    runfolder.write_json(run_dir / "results.json",
                         {"search": meta, "members": summaries, **scores})
    runfolder.write_text(run_dir / "report.md", comparison_markdown(summaries, scores, meta))


TRIAL_CPU = 0.01  # what each trial's own (driver) process reserves besides its Train worker


def trial_cpus(nodes: list[dict[str, float]], concurrent: int) -> float:
    """CPUs for each trial's Train worker so that ``concurrent`` trials fit at once.

    Every running trial also holds TRIAL_CPU; asking 1 CPU per worker for 2 trials on
    2 CPUs would leave one trial's worker waiting forever.
    """
    total = sum(n.get("CPU", 0.0) for n in nodes)
    return math.floor((total / concurrent - TRIAL_CPU) * 10_000) / 10_000
