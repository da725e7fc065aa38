"""One search end to end: validate -> data -> a Ray Tune search per member -> default and
tuned committees scored on the test set -> outputs. :func:`tune` is what ``committee tune``
calls; it checks every option before Ray starts, as :func:`committee.app.run.run` does.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from committee import log
from committee.app.options import TuneOptions, validate_tune
from committee.app.provenance import code_version, machine_info, versions
from committee.app.run import (
    identity_of,
    owned_folder,
    prepare,
    starting_ray,
    writing,
)
from committee.data import fashion_mnist as data_mod
from committee.errors import usage_errors
from committee.log import logger
from committee.report import render as report
from committee.rundir import folder as runfolder
from committee.rundir import storage


def tune(options: TuneOptions) -> Path:
    """Search each member's hyper-parameters, then score default and tuned committees.

    Raises as :func:`run` does; a search that gives no result is a
    :class:`~committee.distributed.tuning.SearchError`."""
    log.setup()
    with usage_errors():  # a ValueError here is bad input, not a failure of the work
        specs = validate_tune(options)
        run_dir, dataset, split = prepare(options, f"tune-{options.preset}")
    identity = identity_of(
        options,
        specs,
        dataset,
        "tune",
        search={
            "num_samples": options.num_samples,
            "scheduler": options.scheduler,
            "time_budget_s": options.time_budget_s,
            "epochs": options.epochs,
        },
    )
    with owned_folder(run_dir, identity, options.overwrite) as mode:
        return _tune_locked(options, specs, run_dir, dataset, split, identity, mode)


def _tune_locked(options, specs, run_dir, dataset, split, identity, mode) -> Path:
    from committee.distributed import cluster, tuning

    logger.info(starting_ray(options.address))
    with usage_errors():  # the address, and trials the cluster cannot host
        cluster.connect(options.address, verbose=options.verbose)
        placement, concurrency = tuning.plan_trials(
            cluster.cluster_nodes(),
            options.num_samples,
            options.max_concurrent,
            options.cpus_per_member,
            options.gpus_per_member,
        )
    with writing(run_dir, mode, {"identity": identity, "options": asdict(options)}) as config:
        logger.info(
            f"search folder {run_dir} ({mode}); trials use {placement.describe()} "
            f"each, up to {concurrency} at once"
        )
        grids, summaries = {}, {}
        if options.storage is None:  # Tune's own storage: only its folder is checked here
            runfolder.make_folder(run_dir, runfolder.TUNE)
        for spec in specs:  # the search never receives the test arrays
            space = tuning.member_space(spec, options.epochs)
            # Under --storage, as for committee run: a multi-node search needs shared storage.
            where = storage.experiment_location(
                run_dir, spec.name, options.storage, config["instance"]
            )
            grids[spec.name] = tuning.search(
                spec,
                space,
                split,
                where,
                num_samples=options.num_samples,
                max_concurrent=concurrency,
                scheduler=options.scheduler,
                time_budget_s=options.time_budget_s,
                seed=identity["members"][spec.name]["seed"],
                placement=placement,
                steps_per_execution=options.steps_per_execution,
                verbose=options.verbose,
                backend=options.backend,
            )
            summaries[spec.name] = tuning.summarize(
                spec, space, grids[spec.name], options.time_budget_s
            )
            default_acc = summaries[spec.name]["default_val_accuracy"]
            logger.info(
                f"{spec.name}: best validation accuracy "
                f"{summaries[spec.name]['best_val_accuracy']:.4f} (default "
                f"{'not reported' if default_acc is None else f'{default_acc:.4f}'})"
            )

        x_test, y_test = data_mod.preprocess(dataset.x_test), dataset.y_test.astype(np.int64)
        scores = tuning.finalize(summaries, split, x_test, y_test, placement, options.backend)
        meta = {
            "name": run_dir.name,
            "num_samples": options.num_samples,
            "scheduler": options.scheduler,
            "max_concurrent": concurrency,
            "time_budget_s": options.time_budget_s,
            "n_train": int(len(split.y_train)),
            "n_val": int(len(split.y_val)),
            "seed": options.seed,
            "backend": options.backend,
            "versions": versions(),
            "code": code_version(),
            "machine": machine_info(),
        }
        report.write_search(
            run_dir,
            summaries,
            tuning.trials_table(grids),
            tuning.trial_histories(grids),
            scores,
            meta,
        )
    for which in ("default", "tuned"):
        block = scores[which]
        print(
            f"{which:<8} committee (mean) test accuracy "
            f"{block['committee']['mean']['accuracy']:.4f}; members "
            + ", ".join(f"{n} {m['accuracy']:.4f}" for n, m in block["members"].items()),
            flush=True,
        )
    return run_dir
