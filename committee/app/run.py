"""One committee run end to end: validate -> data -> Ray training -> committee -> outputs.

:func:`run` is what ``committee run`` and ``jobs/train_committee.py`` call. Every check that
can run before Ray starts does (options, output folder, data files), so bad input fails in
seconds with one line and leaves nothing behind.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from committee import log
from committee.app import progress
from committee.app.options import RunOptions, validate
from committee.app.provenance import code_version, machine_info, versions
from committee.data import fashion_mnist as data_mod
from committee.errors import usage_errors
from committee.log import logger, plural
from committee.report import render as report
from committee.report import tables
from committee.rundir import folder as runfolder
from committee.rundir import identity as identity_mod
from committee.rundir import storage


def _class_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=data_mod.NUM_CLASSES).astype(int).tolist()


def fix_run_name(options: RunOptions, label: str) -> Path:
    """Name an unnamed run ``<time>-<6 random hex digits>-<label>`` (folder.stamp: runs
    started in the same second get their own folders), once, so that later messages can
    name the folder; return the run folder."""
    if options.run_name is None:
        options.run_name = f"{runfolder.stamp()}-{label}"
    return options.run_dir()


def prepare(options: RunOptions, label: str):
    """Fix the run folder's name, load and split the data. Writes nothing.

    Returns ``(run_dir, dataset, split)``. Runs before any Ray cluster starts.
    """
    run_dir = fix_run_name(options, label)
    dataset = data_mod.load(options.data_dir)
    split = data_mod.split_train_val(
        dataset.x_train,
        dataset.y_train,
        options.val_fraction,
        options.split,
        options.seed,
        options.limit_train,
    )
    return run_dir, dataset, split


def identity_of(options: RunOptions, specs, dataset, kind: str, search=None) -> dict:
    minutes = options.budget_minutes() if kind == "run" else None
    return identity_mod.run_identity(
        kind=kind,
        preset=options.preset,
        specs=specs,
        seed=options.seed,
        split=options.split,
        val_fraction=options.val_fraction,
        limit_train=options.limit_train,
        data_sha256=dataset.sha256,
        time_budget_s=None if minutes is None else 60 * minutes,
        search=search,
        backend=options.backend,
        config=options.member_configs,
    )


@contextmanager
def owned_folder(run_dir: Path, identity: dict, overwrite: bool):
    """Lock ``run_dir`` for this process and decide new / resume / overwrite (nothing in the
    folder changes; raises RunFolderError before Ray starts). Yields the mode."""
    with runfolder.RunLock(run_dir):
        runfolder.restore_interrupted_overwrite(run_dir)
        yield runfolder.check(run_dir, identity, overwrite=overwrite)


@contextmanager
def writing(run_dir: Path, mode: str, config: dict):
    """Prepare the folder as ``mode``; on any failure of an ``--overwrite``, put the run it
    replaced back. Yields the config written (with its ``instance`` id)."""
    written = runfolder.prepare(run_dir, mode, config)
    try:
        yield written
    except BaseException:
        if runfolder.abandon(run_dir, mode):
            logger.info(f"--overwrite did not finish: {run_dir} holds the earlier run again")
        raise
    runfolder.finish(run_dir)


def _class_counts_of(split, y_test) -> dict[str, list[int]]:
    """Class counts of the images actually used: training and validation parts, test set."""
    return {
        "train": _class_counts(split.y_train),
        "validation": _class_counts(split.y_val),
        "test": _class_counts(y_test),
    }


def run(options: RunOptions) -> Path:
    """Train and score the committee; return the run folder.

    Raises :class:`~committee.errors.UsageError` on bad input (before anything starts), another
    :class:`~committee.errors.CommitteeError` on a known condition (run folder, data, a
    diverged member), anything else on an unexpected failure."""
    log.setup()
    with usage_errors():  # a ValueError here is bad input, not a failure of the work
        specs = validate(options)
        run_dir, dataset, split = prepare(options, options.preset)
        identity = identity_of(options, specs, dataset, "run")
    with owned_folder(run_dir, identity, options.overwrite) as mode:
        return _run_locked(options, specs, run_dir, dataset, split, identity, mode)


def _run_locked(options, specs, run_dir, dataset, split, identity, mode) -> Path:
    from committee.distributed import cluster
    from committee.distributed import driver as orch

    x_test = data_mod.preprocess(dataset.x_test)
    y_test = dataset.y_test.astype(np.int64)
    logger.info(
        f"data from {dataset.source}: {len(split.y_train):,} train / "
        f"{len(split.y_val):,} validation ({options.split}) / {len(y_test):,} test"
    )

    started = time.time()
    logger.info(starting_ray(options.address))
    with usage_errors():  # the address, and members the cluster cannot host
        cluster.connect(options.address, verbose=options.verbose)
        placement = cluster.plan_placement(
            len(specs), cluster.cluster_nodes(), options.cpus_per_member, options.gpus_per_member
        )
    minutes = options.budget_minutes()
    config = {
        "identity": identity,
        "options": asdict(options),
        "member_minutes": minutes,
        "members": [s.to_dict() for s in specs],
        "placement": asdict(placement),
    }
    with writing(run_dir, mode, config) as config:
        logger.info(
            f"run folder {run_dir} ({mode}); {plural(len(specs), 'member')} concurrently on "
            f"{options.backend}, {placement.describe()} each"
        )
        rng = np.random.default_rng(options.seed)
        pick = rng.choice(len(dataset.x_train), size=report.MAX_SAMPLES, replace=False)
        runfolder.write_npz(
            run_dir / runfolder.SAMPLES,
            run_dir,
            images=dataset.x_train[pick],
            labels=dataset.y_train[pick],
        )

        if options.storage is None:  # Ray Train's own storage: only its folder is checked here
            runfolder.make_folder(run_dir, runfolder.TRAIN)
        display = (
            None
            if options.verbose
            else progress.Display([s.name for s in specs], log_dir=run_dir / runfolder.LOGS)
        )
        with progress.displaying(display):
            outcomes, scores, committee_probas = orch.run_members(
                specs,
                split,
                x_test,
                y_test,
                run_dir,
                identity=identity,
                placement=placement,
                max_failures=options.max_failures,
                storage=storage.storage_for(run_dir, options.storage, config["instance"]),
                steps_per_execution=options.steps_per_execution,
                time_budget_s=None if minutes is None else 60 * minutes,
                display=display,
                tensorboard=run_dir / runfolder.TENSORBOARD,
                backend=options.backend,
            )

        finished = time.time()
        results = {
            "run": {
                "name": run_dir.name,
                "preset": options.preset,
                "members": [s.name for s in specs],
                "seed": options.seed,
                "backend": options.backend,
                "placement": placement.describe(),
                "mode": mode,
                "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
                "wall_s": finished - started,
            },
            "config": config,
            "versions": versions(),
            "code": code_version(),
            "machine": machine_info(),
            "data": {
                "source": dataset.source,
                "sha256": dataset.sha256,
                "split": options.split,
                "val_fraction": options.val_fraction,
                "limit_train": options.limit_train,
                "n_train": int(len(split.y_train)),
                "n_val": int(len(split.y_val)),
                "n_test": int(len(y_test)),
                "class_counts": _class_counts_of(split, y_test),
            },
            "training": {o.name: o.training_entry() for o in outcomes},
            **scores,
        }
        tables.write_predictions(
            run_dir / runfolder.PREDICTIONS,
            tables.predictions_table(
                y_test, {o.name: o.test_proba for o in outcomes}, committee_probas
            ),
            run_dir,
        )
        report.render(run_dir, results)
        runfolder.write_json(
            run_dir / runfolder.RESULTS, results, run_dir
        )  # last: its presence means done
    print(summary(results), flush=True)
    return run_dir


def starting_ray(address: str | None) -> str:
    """The line shown while Ray starts (seconds to a minute, before any member's bar)."""
    import os

    joined = address or os.environ.get("RAY_ADDRESS")
    return (
        f"connecting to the Ray cluster at {joined} ..."
        if joined
        else "starting a private local Ray cluster ..."
    )


def summary(results: dict) -> str:
    """A few lines for the terminal and the job logs."""
    lines = [f"Run {results['run']['name']} ({results['run']['wall_s']:.0f} s): test accuracy"]
    for name, m in results["members"].items():
        lines.append(f"  member {name:<12} accuracy {m['accuracy']:.4f}")
    for rule, m in results["committee"].items():
        lines.append(f"  committee {rule:<9} accuracy {m['accuracy']:.4f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- tune
