"""One committee run end to end: validate -> data -> Ray training -> committee -> outputs.

:func:`run` is what ``committee run`` and ``jobs/train_committee.py`` call. Every check that
can run before Ray starts does (options, output folder, data files), so bad input fails in
seconds with one line and leaves nothing behind.
"""

from __future__ import annotations

import math
import platform
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from committee import validation
from committee.app import progress
from committee.data import fashion_mnist as data_mod
from committee.distributed import address as address_mod
from committee.errors import usage_errors
from committee.log import logger
from committee.members import seeds
from committee.members import spec as members_mod
from committee.report import render as report
from committee.rundir import folder as runfolder
from committee.rundir import identity as identity_mod
from committee.training import backend as backend_mod
from committee.validation import Interval, Options

PACKAGES = ("ray", "tensorflow", "keras", "jax", "jaxlib", "numpy", "scikit-learn", "pyarrow",
            "matplotlib")


@dataclass
class RunOptions:
    preset: str = "seed"
    members: list[str] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    data_dir: str | None = None
    output: str = "runs"
    run_name: str | None = None
    overwrite: bool = False
    address: str | None = None
    seed: int = 0
    limit_train: int | None = None
    split: str = "tail"
    val_fraction: float = 0.2
    cpus_per_member: float | None = None
    gpus_per_member: float | None = None
    workers_per_member: int = 1
    max_failures: int = 1
    storage: str | None = None
    steps_per_execution: int = 32
    member_minutes: float | None = None  # each member's budget: training + prediction
    verbose: bool = False  # every worker's output instead of the live display
    backend: str | None = None  # Keras' backend; None: KERAS_BACKEND, else tensorflow

    def specs(self) -> list[members_mod.MemberSpec]:
        """The members to train, with overrides applied; raises ValueError on bad values."""
        return members_mod.select_members(self.preset, self.members, epochs=self.epochs,
                                          batch_size=self.batch_size,
                                          learning_rate=self.learning_rate)

    def budget_minutes(self) -> float | None:
        """Each member's time budget: ``member_minutes``, else the preset's default
        (``members.PRESET_MEMBER_MINUTES``) unless ``epochs`` is given — epochs asked for
        explicitly are trained in full."""
        if self.member_minutes is not None or self.epochs is not None:
            return self.member_minutes
        return members_mod.PRESET_MEMBER_MINUTES.get(self.preset)

    def run_dir(self) -> Path:
        """The run folder (``run_name`` is fixed by :func:`_prepare` before a run starts)."""
        return Path(self.output).expanduser() / self.run_name


# RunOptions' simple constraints, checked in this order (committee.validation); the preset,
# --members and the members' overrides (--epochs, --batch-size, --learning-rate) are checked
# by RunOptions.specs() (members.select_members, members.SPEC_CONSTRAINTS), and the command
# line refuses some values earlier, while parsing (cli).
RUN_CONSTRAINTS = {
    "split": Options(data_mod.SPLITS),
    "limit_train": [None, Interval(int, 10, 60_000, closed="both")],
    "cpus_per_member": [None, Interval(float, 0, None, closed="neither", noun="a number")],
    "gpus_per_member": [None, Interval(float, 0, None, closed="left", noun="a number")],
    "max_failures": Interval(int, 0, None, closed="left"),
    "steps_per_execution": Interval(int, 1, None, closed="left"),
    "member_minutes": [None, Interval(float, 0, math.inf, closed="neither",
                                      noun="a finite number")],
}


def _one_worker_per_member(options: RunOptions) -> None:
    if options.workers_per_member != 1:
        raise ValueError(
            f"--workers-per-member {options.workers_per_member} is not supported; expected 1. "
            "Keras 3 fails under MultiWorkerMirroredStrategy with 2 or more workers "
            "(ray-project/ray#47464, keras-team/keras#20585); each member trains on one worker")


def _seed_in_range(options: RunOptions) -> None:
    seeds.check_seed(options.seed)


def _plain_run_name(options: RunOptions) -> None:
    if options.run_name is not None:
        check_run_name(options.run_name)


def _address_form(options: RunOptions) -> None:
    address_mod.resolve(options.address)  # its form; connect() checks that a Ray head answers


def _writable_output(options: RunOptions) -> None:
    runfolder.check_writable(options.output)


def _usable_storage(options: RunOptions) -> None:
    runfolder.check_storage(options.storage)


def _known_backend(options: RunOptions) -> None:
    """Fixes ``backend`` (--backend, else KERAS_BACKEND, else tensorflow) for the run."""
    options.backend = backend_mod.resolve(options.backend)


# RunOptions' other checks, after the table, in this order.
RUN_CHECKS = (_one_worker_per_member, _seed_in_range, _plain_run_name, _address_form,
              _writable_output, _usable_storage, _known_backend)


def validate(options: RunOptions) -> list[members_mod.MemberSpec]:
    """Check every option that needs no cluster; return the member specs."""
    specs = options.specs()
    validation.check(options, RUN_CONSTRAINTS, RUN_CHECKS)
    return specs


def check_run_name(name: str) -> str:
    """A run name is a plain folder name: no ``/``, no control characters, not ``.``/``..``
    nor hidden, no leading or trailing space, at most 245 bytes in UTF-8 (the lock and
    ``--overwrite``'s ``.<name>.replaced`` beside it must fit the 255-byte limit of file
    names). Raises ValueError naming the value."""
    if (not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".")
            or name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ValueError(f"--run-name {name!r} must be a plain folder name (no '/', no control "
                         f"characters, no leading or trailing space, not starting with '.')")
    if len(name.encode("utf-8")) > MAX_RUN_NAME_BYTES:
        raise ValueError(f"--run-name of {len(name.encode('utf-8'))} bytes is too long; "
                         f"expected at most {MAX_RUN_NAME_BYTES} bytes")
    return name


MAX_RUN_NAME_BYTES = 245


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM (kill, `ray job stop`) into KeyboardInterrupt, so the run stops cleanly.

    Called again after ``ray.init``, which installs a SIGTERM handler of its own.
    """
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def code_version(folder: Path | None = None) -> dict:
    """``{"git_commit", "git_dirty"}`` of the git checkout holding this package (``folder``,
    default: the package's own): HEAD's commit and whether tracked files differ from it. Both
    None when the package is not the top of a git checkout (an installed copy) or git is
    missing. Never raises."""
    folder = Path(folder or Path(__file__).resolve().parents[1])  # the committee package
    unknown = {"git_commit": None, "git_dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # A site-packages copy inside some other repository must not report that repository.
    if top is None or Path(top).resolve() != folder.parent.resolve():
        return unknown
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def machine_info() -> dict:
    """The driver's machine: CPU model and platform (each member's own is in training)."""
    from committee.training.device import cpu_model
    return {"cpu": cpu_model(), "platform": platform.platform()}


def _class_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=data_mod.NUM_CLASSES).astype(int).tolist()


def _prepare(options: RunOptions, label: str):
    """Fix the run folder's name, load and split the data. Writes nothing.

    Returns ``(run_dir, dataset, split)``. Runs before any Ray cluster starts.
    """
    if options.run_name is None:  # fixed once, so later messages can name the folder
        options.run_name = datetime.now().strftime(f"%Y%m%d-%H%M%S-{label}")
    run_dir = options.run_dir()
    dataset = data_mod.load(options.data_dir)
    split = data_mod.split_train_val(dataset.x_train, dataset.y_train, options.val_fraction,
                                     options.split, options.seed, options.limit_train)
    return run_dir, dataset, split


def _identity(options: RunOptions, specs, dataset, kind: str, search=None) -> dict:
    minutes = options.budget_minutes() if kind == "run" else None
    return identity_mod.run_identity(
        kind=kind, preset=options.preset, specs=specs, seed=options.seed, split=options.split,
        val_fraction=options.val_fraction, limit_train=options.limit_train,
        data_sha256=dataset.sha256, time_budget_s=None if minutes is None else 60 * minutes,
        search=search, backend=options.backend)


@contextmanager
def _owned_folder(run_dir: Path, identity: dict, overwrite: bool):
    """Lock ``run_dir`` for this process and decide new / resume / overwrite (nothing in the
    folder changes; raises RunFolderError before Ray starts). Yields the mode."""
    with runfolder.RunLock(run_dir):
        runfolder.restore_interrupted_overwrite(run_dir)
        yield runfolder.check(run_dir, identity, overwrite=overwrite)


@contextmanager
def _writing(run_dir: Path, mode: str, config: dict):
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
    return {"train": _class_counts(split.y_train), "validation": _class_counts(split.y_val),
            "test": _class_counts(y_test)}


def run(options: RunOptions) -> Path:
    """Train and score the committee; return the run folder.

    Raises :class:`~committee.errors.UsageError` on bad input (before anything starts), another
    :class:`~committee.errors.CommitteeError` on a known condition (run folder, data, a
    diverged member), anything else on an unexpected failure."""
    with usage_errors():  # a ValueError here is bad input, not a failure of the work
        specs = validate(options)
        run_dir, dataset, split = _prepare(options, options.preset)
        identity = _identity(options, specs, dataset, "run")
    with _owned_folder(run_dir, identity, options.overwrite) as mode:
        return _run_locked(options, specs, run_dir, dataset, split, identity, mode)


def _run_locked(options, specs, run_dir, dataset, split, identity, mode) -> Path:
    from committee.distributed import cluster
    from committee.distributed import driver as orch

    x_test = data_mod.preprocess(dataset.x_test)
    y_test = dataset.y_test.astype(np.int64)
    logger.info(f"data from {dataset.source}: {len(split.y_train):,} train / "
                f"{len(split.y_val):,} validation ({options.split}) / {len(y_test):,} test")

    started = time.time()
    with usage_errors():  # the address, and members the cluster cannot host
        cluster.connect(options.address, verbose=options.verbose)
        interrupt_on_sigterm()
        placement = cluster.plan_placement(len(specs), cluster.cluster_nodes(),
                                           options.cpus_per_member, options.gpus_per_member)
    minutes = options.budget_minutes()
    config = {"identity": identity, "options": asdict(options), "member_minutes": minutes,
              "members": [s.to_dict() for s in specs], "placement": asdict(placement)}
    with _writing(run_dir, mode, config) as config:
        logger.info(f"run folder {run_dir} ({mode}); {len(specs)} members concurrently on "
                    f"{options.backend}, {placement.describe()} each")
        rng = np.random.default_rng(options.seed)
        pick = rng.choice(len(dataset.x_train), size=report.MAX_SAMPLES, replace=False)
        runfolder.write_npz(run_dir / report.SAMPLES, images=dataset.x_train[pick],
                            labels=dataset.y_train[pick])

        display = None if options.verbose else progress.Display(
            [s.name for s in specs], log_dir=run_dir / "logs")
        with progress.displaying(display):
            outcomes, scores, committee_probas = orch.run_members(
                specs, split, x_test, y_test, run_dir, identity=identity, placement=placement,
                max_failures=options.max_failures,
                storage=orch.storage_for(run_dir, options.storage, config["instance"]),
                steps_per_execution=options.steps_per_execution,
                time_budget_s=None if minutes is None else 60 * minutes, display=display,
                tensorboard=run_dir / "tensorboard", backend=options.backend)

        finished = time.time()
        results = {
            "run": {"name": run_dir.name, "preset": options.preset,
                    "members": [s.name for s in specs], "seed": options.seed,
                    "backend": options.backend, "placement": placement.describe(),
                    "mode": mode,
                    "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
                    "wall_s": finished - started},
            "config": config,
            "versions": _versions(),
            "code": code_version(),
            "machine": machine_info(),
            "data": {"source": dataset.source, "sha256": dataset.sha256,
                     "split": options.split, "val_fraction": options.val_fraction,
                     "limit_train": options.limit_train,
                     "n_train": int(len(split.y_train)), "n_val": int(len(split.y_val)),
                     "n_test": int(len(y_test)),
                     "class_counts": _class_counts_of(split, y_test)},
            "training": {o.name: o.training_entry() for o in outcomes},
            **scores,
        }
        report.write_predictions(run_dir / report.PREDICTIONS, report.predictions_table(
            y_test, {o.name: o.test_proba for o in outcomes}, committee_probas))
        report.render(run_dir, results)
        runfolder.write_json(run_dir / runfolder.RESULTS, results)  # last: its presence means done
    print(summary(results), flush=True)
    return run_dir


def summary(results: dict) -> str:
    """A few lines for the terminal and the job logs."""
    lines = [f"Run {results['run']['name']} ({results['run']['wall_s']:.0f} s): test accuracy"]
    for name, m in results["members"].items():
        lines.append(f"  member {name:<12} accuracy {m['accuracy']:.4f}")
    for rule, m in results["committee"].items():
        lines.append(f"  committee {rule:<9} accuracy {m['accuracy']:.4f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- tune

@dataclass
class TuneOptions(RunOptions):
    num_samples: int = 8
    max_concurrent: int | None = None
    time_budget_s: float | None = None
    scheduler: str = "asha"


def _schedulers() -> tuple[str, ...]:
    from committee.distributed.tuning import (
        SCHEDULERS,  # imports Ray: only when a search is checked
    )
    return SCHEDULERS


# TuneOptions' own fields (RunOptions' are checked first, by validate).
TUNE_CONSTRAINTS = {
    "num_samples": Interval(int, 1, None, closed="left"),
    "max_concurrent": [None, Interval(int, 1, None, closed="left")],
    "time_budget_s": [None, Interval(float, 0, None, closed="neither")],
    "scheduler": Options(_schedulers),
}


def _no_member_minutes(options: TuneOptions) -> None:
    if options.member_minutes is not None:
        raise ValueError(f"--member-minutes {options.member_minutes:g} applies to committee "
                         "run; bound a search with --time-budget-s")


def _searchable_members(options: TuneOptions) -> None:
    """Every member has a search space, valid for its spec and ``--epochs``."""
    from committee.distributed.tuning import member_space
    for spec in options.specs():
        if spec.name not in members_mod.SEARCH_SPACES:
            raise ValueError(f"member {spec.name!r} has no search space; expected one of "
                             f"{', '.join(members_mod.SEARCH_SPACES)}")
        member_space(spec, options.epochs)


TUNE_CHECKS = (_no_member_minutes, _searchable_members)


def validate_tune(options: TuneOptions) -> list[members_mod.MemberSpec]:
    specs = validate(options)
    validation.check(options, TUNE_CONSTRAINTS, TUNE_CHECKS)
    return specs


def tune(options: TuneOptions) -> Path:
    """Search each member's hyper-parameters, then score default and tuned committees.

    Raises as :func:`run` does; a search that gives no result is a
    :class:`~committee.distributed.tuning.SearchError`."""
    with usage_errors():  # a ValueError here is bad input, not a failure of the work
        specs = validate_tune(options)
        run_dir, dataset, split = _prepare(options, f"tune-{options.preset}")
    identity = _identity(options, specs, dataset, "tune", search={
        "num_samples": options.num_samples, "scheduler": options.scheduler,
        "time_budget_s": options.time_budget_s, "epochs": options.epochs})
    with _owned_folder(run_dir, identity, options.overwrite) as mode:
        return _tune_locked(options, specs, run_dir, dataset, split, identity, mode)


def _tune_locked(options, specs, run_dir, dataset, split, identity, mode) -> Path:
    from committee.distributed import cluster, tuning

    with usage_errors():  # the address, and trials the cluster cannot host
        cluster.connect(options.address, verbose=options.verbose)
        interrupt_on_sigterm()
        placement, concurrency = tuning.plan_trials(
            cluster.cluster_nodes(), options.num_samples, options.max_concurrent,
            options.cpus_per_member, options.gpus_per_member)
    with _writing(run_dir, mode, {"identity": identity, "options": asdict(options)}) as config:
        logger.info(f"search folder {run_dir} ({mode}); trials use {placement.describe()} "
                    f"each, up to {concurrency} at once")
        grids, summaries = {}, {}
        for spec in specs:  # the search never receives the test arrays
            space = tuning.member_space(spec, options.epochs)
            # Under --storage, as for committee run: a multi-node search needs shared storage.
            where = tuning.experiment_location(run_dir, spec.name, options.storage,
                                               config["instance"])
            grids[spec.name] = tuning.search(
                spec, space, split, where,
                num_samples=options.num_samples, max_concurrent=concurrency,
                scheduler=options.scheduler, time_budget_s=options.time_budget_s,
                seed=identity["members"][spec.name]["seed"], placement=placement,
                steps_per_execution=options.steps_per_execution, verbose=options.verbose,
                backend=options.backend)
            summaries[spec.name] = tuning.summarize(spec, space, grids[spec.name],
                                                    options.time_budget_s)
            default_acc = summaries[spec.name]["default_val_accuracy"]
            logger.info(f"{spec.name}: best validation accuracy "
                        f"{summaries[spec.name]['best_val_accuracy']:.4f} (default "
                        f"{'not reported' if default_acc is None else f'{default_acc:.4f}'})")

        x_test, y_test = data_mod.preprocess(dataset.x_test), dataset.y_test.astype(np.int64)
        scores = tuning.finalize(summaries, split, x_test, y_test, placement, options.backend)
        meta = {"name": run_dir.name, "num_samples": options.num_samples,
                "scheduler": options.scheduler, "max_concurrent": concurrency,
                "time_budget_s": options.time_budget_s, "n_train": int(len(split.y_train)),
                "n_val": int(len(split.y_val)), "seed": options.seed,
                "backend": options.backend, "versions": _versions(),
                "code": code_version(), "machine": machine_info()}
        report.write_search(run_dir, summaries, tuning.trials_table(grids),
                            tuning.trial_histories(grids), scores, meta)
    for which in ("default", "tuned"):
        block = scores[which]
        print(f"{which:<8} committee (mean) test accuracy "
              f"{block['committee']['mean']['accuracy']:.4f}; members " + ", ".join(
                  f"{n} {m['accuracy']:.4f}" for n, m in block["members"].items()), flush=True)
    return run_dir
