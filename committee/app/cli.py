"""Command line: ``committee run``, ``tune``, ``report``, ``predict`` and ``export``.

Every command goes through one error boundary (:func:`guarded`). Bad options end in one line
on stderr (what was wrong, the value, what was expected) and exit status 2, before any Ray
cluster starts; so do the known conditions the project names
(:class:`committee.errors.CommitteeError`: a run folder, data or search that cannot be used, a
diverged member), a full disk and a write the file system refuses. Ctrl-C exits 130, SIGTERM
143, each with one line. Any other failure exits 1 with one line that says where its full
traceback was written (RUN_DIR/logs/error.log, else a temporary file).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from committee import log
from committee.app.options import (
    PREDICT_CONSTRAINTS,
    RUN_CONSTRAINTS,
    TUNE_CONSTRAINTS,
    ExportOptions,
    PredictOptions,
    RunOptions,
    TuneOptions,
)
from committee.data.fashion_mnist import SPLITS
from committee.errors import (
    RESUME,
    CommitteeError,
    DiskFull,
    InputError,
    Terminated,
    UsageError,
    disk_full,
    one_line,
    usage_errors,
)
from committee.log import printable
from committee.members.spec import PRESET_MEMBER_MINUTES, PRESETS, SPEC_CONSTRAINTS
from committee.rundir.folder import LOGS, RunFolderError, write_text
from committee.training.backend import BACKENDS
from committee.validation import argument_type, constraint_of


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2, and no
    option is taken from an abbreviation of its name (``--epoch 2`` is an error, not
    ``--epochs 2``): this parser and every subcommand's (argparse makes them of this class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def _typed(table: dict, field: str):
    """An argparse ``type=`` for ``field``: its constraint in the options' table
    (options.RUN_CONSTRAINTS, TUNE_CONSTRAINTS, PREDICT_CONSTRAINTS, members.SPEC_CONSTRAINTS),
    so the command line refuses, while parsing and in argparse's wording ("argument --epochs:
    0 must lie in 1..100000"), exactly what the table refuses for callers that build the
    options themselves."""
    return argument_type(constraint_of(table[field]))


def _seed(text: str) -> int:
    from committee.members.seeds import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer; expected an integer in 0..{MAX_SEED}"
        ) from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"{value} is out of range; expected an integer in 0..{MAX_SEED}"
        )
    return value


def _member_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no member; expected e.g. model1,model3")
    return names


def _preset_epochs() -> str:
    """The presets' epoch ceilings for --help, e.g. "20 for seed, 30 for strong" (a preset
    whose members differ lists each, e.g. "18/12/17")."""
    ceilings = []
    for name, specs in PRESETS.items():
        epochs = [str(spec.epochs) for spec in specs]
        ceilings.append(f"{epochs[0] if len(set(epochs)) == 1 else '/'.join(epochs)} for {name}")
    return ", ".join(ceilings)


def _preset_minutes() -> str:
    """The presets' default budgets for --help, e.g. "42 for strong; none for seed"."""
    budgets = [f"{m:g} for {p}" for p, m in PRESET_MEMBER_MINUTES.items()]
    return "; ".join(budgets + [f"none for {p}" for p in PRESETS if p not in PRESET_MEMBER_MINUTES])


def add_run_arguments(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    """Options of a committee run (shared by ``committee run``, ``tune`` and
    jobs/train_committee.py; ``config``: with ``--config``, which a search does not take)."""
    g = parser.add_argument_group("members")
    if config:
        g.add_argument(
            "--config",
            metavar="FILE",
            help="train each member named in FILE with its hyper-parameters: the "
            "best_configs.json of a search (committee tune --run-name S writes "
            'runs/S/best_configs.json), an object of member -> settings such as {"model1": '
            '{"learning_rate": 0.002, "arch.filters": 64}}; without --members, the members '
            "FILE names. Its content is part of the run's identity; --epochs, --batch-size "
            "and --learning-rate still override it",
        )
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"which set of members to train (default: {RunOptions.preset}, the notebook's three)",
    )
    g.add_argument(
        "--members",
        type=_member_list,
        metavar="A,B",
        help="train only these members of the preset, e.g. model1,model3",
    )
    g.add_argument(
        "--epochs",
        type=_typed(SPEC_CONSTRAINTS, "epochs"),
        help="epoch ceiling for every member "
        f"(default: the preset's, {_preset_epochs()}; early stopping or a time "
        "budget may end sooner). Given, it turns off the preset's time budget",
    )
    g.add_argument(
        "--member-minutes",
        type=_typed(RUN_CONSTRAINTS, "member_minutes"),
        metavar="M",
        help="each member trains and predicts within about M minutes: after "
        "every epoch it measures its pace (and, from the validation pass, what its "
        "prediction will take) and plans only the epochs that fit, its "
        "learning-rate schedule following the plan (default: the preset's, "
        f"{_preset_minutes()}, unless --epochs is given). The job adds about a "
        "minute for start-up and scoring",
    )
    g.add_argument(
        "--batch-size",
        type=_typed(SPEC_CONSTRAINTS, "batch_size"),
        help="override every member's batch size",
    )
    g.add_argument(
        "--learning-rate",
        type=_typed(SPEC_CONSTRAINTS, "learning_rate"),
        help="override every member's initial learning rate",
    )
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data-dir",
        help="folder with the four Fashion-MNIST .gz files (default: "
        "$FASHION_MNIST_DIR, then ~/.keras/datasets/fashion-mnist, else download)",
    )
    g.add_argument(
        "--limit-train",
        type=_typed(RUN_CONSTRAINTS, "limit_train"),
        metavar="N",
        help="use only the first N training images (quick runs)",
    )
    g.add_argument(
        "--split",
        choices=SPLITS,
        help="validation split: tail = the last 20%% as in the notebook (default); "
        "stratified = seeded, class-balanced",
    )
    g.add_argument(
        "--seed",
        type=_seed,
        help=f"random seed, 0..2**32-1 (default {RunOptions.seed}); "
        "a member's seed is this plus its place in the preset",
    )
    g = parser.add_argument_group("outputs")
    g.add_argument("--output", help=f"parent folder of run folders (default {RunOptions.output}/)")
    g.add_argument(
        "--run-name",
        help="run folder name (default: <time>-<6 random hex digits>-<preset>, its own "
        "even for runs started in the same second); rerunning "
        "an unfinished run's name with the same settings resumes it",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run folder of the same name; the old run is kept until "
        "the new one has finished, and restored if it fails",
    )
    g.add_argument(
        "--storage",
        help="Ray Train checkpoint storage (and a search's trials): a "
        "shared path or a URI such as s3://bucket/prefix, under which the run keeps "
        "RUN_NAME/<instance id>/ (default: RUN_DIR/train, RUN_DIR/tune for a search; "
        "multi-node clusters need shared storage)",
    )
    g = parser.add_argument_group("Ray")
    g.add_argument(
        "--address",
        help="Ray cluster to join (default: $RAY_ADDRESS, else a private local Ray is started)",
    )
    g.add_argument(
        "--cpus-per-member",
        type=_typed(RUN_CONSTRAINTS, "cpus_per_member"),
        help="CPUs per member, fractions in steps of 0.0001 (default: the cluster's CPUs "
        "shared evenly)",
    )
    g.add_argument(
        "--gpus-per-member",
        type=_typed(RUN_CONSTRAINTS, "gpus_per_member"),
        help="GPUs per member, fractions in steps of 0.0001 (default: 1 with >= 3 GPUs, an even "
        "share with fewer, 0 without)",
    )
    g.add_argument(
        "--workers-per-member",
        type=_typed(RUN_CONSTRAINTS, "workers_per_member"),
        help="data-parallel workers per member; only 1 works with Keras 3 "
        f"(default {RunOptions.workers_per_member})",
    )
    g.add_argument(
        "--max-failures",
        type=_typed(RUN_CONSTRAINTS, "max_failures"),
        help="retries of a member's training after a worker dies "
        f"(default {RunOptions.max_failures})",
    )
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend of every worker: tensorflow or jax (default: "
        "$KERAS_BACKEND, else tensorflow; jax needs the project's [jax] extra, or "
        "jax[cuda12] on GPUs)",
    )
    g.add_argument(
        "--verbose",
        action="store_true",
        help="show every worker's output (TensorFlow, Keras, Ray) instead of the "
        "live per-member display; the display's lines are always in "
        "RUN_DIR/logs/<member>.log",
    )
    g.add_argument(
        "--steps-per-execution",
        type=_typed(RUN_CONSTRAINTS, "steps_per_execution"),
        help="Keras steps_per_execution: batches per compiled call "
        f"(default {RunOptions.steps_per_execution}; "
        "same updates, less per-step overhead)",
    )


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("search")
    g.add_argument(
        "--num-samples",
        type=_typed(TUNE_CONSTRAINTS, "num_samples"),
        help="configurations per member, the default one included "
        f"(default {TuneOptions.num_samples})",
    )
    g.add_argument(
        "--max-concurrent",
        type=_typed(TUNE_CONSTRAINTS, "max_concurrent"),
        help="trials at once (default: as many as the cluster's CPUs allow)",
    )
    g.add_argument(
        "--time-budget-s",
        type=_typed(TUNE_CONSTRAINTS, "time_budget_s"),
        help="stop each member's search after T s",
    )
    g.add_argument(
        "--scheduler",
        help=f"asha (stop poor trials early) or fifo (default {TuneOptions.scheduler})",
    )


def options_from_args(args: argparse.Namespace):
    """``committee run``'s or ``tune``'s options (:class:`~committee.app.options.RunOptions` or
    :class:`~committee.app.options.TuneOptions`) from parsed arguments."""
    if getattr(args, "command", "run") == "tune":
        return options_from(TuneOptions, args)
    return options_from(RunOptions, args)


def options_from(cls, args: argparse.Namespace):
    """An options dataclass from parsed arguments: each field takes the argument of the same
    name (``--max-failures`` -> ``max_failures``); a field with no argument keeps its default
    (e.g. ``RunOptions.val_fraction``), an argument with no field is not an option (the
    subcommand)."""
    given = vars(args)
    return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})


def package_version() -> str:
    """The installed package's version (its metadata), else the source's
    ``committee.__version__``."""
    from importlib import metadata

    import committee

    try:
        return metadata.version("fashion-committee")
    except metadata.PackageNotFoundError:
        return committee.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="committee",
        description="Train a committee of CNNs on Fashion-MNIST with Ray and score it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    # An option left out is absent from the parsed arguments (SUPPRESS), so its default is
    # the options dataclass's: each default is written once, in committee.app.options.
    run = sub.add_parser(
        "run",
        help="train the members concurrently and score the committee",
        argument_default=argparse.SUPPRESS,
    )
    add_run_arguments(run)
    tune = sub.add_parser(
        "tune",
        help="search each member's hyper-parameters with Ray Tune, "
        "then score default and tuned committees",
        argument_default=argparse.SUPPRESS,
    )
    add_run_arguments(tune, config=False)
    add_tune_arguments(tune)
    rep = sub.add_parser("report", help="redraw report.md and figures of a finished run")
    rep.add_argument("run_dir", type=Path, help="a run folder holding results.json")
    add_predict_parser(sub)
    add_export_parser(sub)
    add_submit_parser(sub)
    return parser


PREDICT_DESCRIPTION = """\
Classify new images with the committee of a finished run, as Ray Data batch inference (one
actor pool per member, the member's test-time augmentation, the run's fusion rules and fitted
weights).

Inputs become what the members were trained on: 28x28 grayscale, float 0..1 = pixel / 255,
light garment on a dark background.
  PNG/JPEG  transparency laid on black, converted to 8-bit grayscale (Pillow 'L'), resized to
            28x28 with the Lanczos filter if another size (aspect ratio not kept); never
            inverted unless --invert is given
  .npy      (n, 28, 28) or (28, 28); integer dtype: 0..255, divided by 255; float dtype: 0..1,
            used as is (the dtype decides; each file's reading is logged)
  .gz       a gzipped IDX images file (magic 2051, 28x28), any count
  folder    its files with these extensions, in name order (not its subfolders)

Output: one row per image: input, index (position in a .npy/IDX file, 0 for an image file),
class and class_name (the committee's, under --rule), disagreement (fraction of members whose
class differs), entropy (of the committee's probabilities, nats), then <member>_proba/_pred
and committee_<rule>_proba/_pred as in the run's predictions.parquet. Probabilities are
lists of 10 float32 in Parquet, 10 columns <column>_0.._9 in CSV."""


def add_predict_parser(sub) -> None:
    from committee.ensemble.fusion import RULES

    pred = sub.add_parser(
        "predict",
        help="classify new images with a trained committee",
        description=PREDICT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    pred.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="the folder of a finished committee run"
    )
    pred.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="PNG/JPEG files, .npy arrays, IDX .gz files, or folders of them",
    )
    pred.add_argument(
        "--output",
        metavar="FILE",
        help="a .parquet or .csv file in an existing folder (default: "
        "predictions-<run name>-<timestamp>.parquet in the current folder; the "
        "run folder is left as the run wrote it)",
    )
    pred.add_argument(
        "--rule",
        choices=RULES,
        help="the fusion rule that gives the class, disagreement and entropy "
        f"columns (default {PredictOptions.rule}); every rule of the run gets its own columns",
    )
    pred.add_argument(
        "--invert",
        action="store_true",
        help="invert PNG/JPEG images (255 - pixel) after conversion: for dark "
        "garments on a light background (arrays and IDX files are never inverted)",
    )
    pred.add_argument(
        "--batch-size",
        type=_typed(PREDICT_CONSTRAINTS, "batch_size"),
        help=f"images per Ray Data batch (default {PredictOptions.batch_size})",
    )
    pred.add_argument(
        "--address",
        help="Ray cluster to join (default: $RAY_ADDRESS, else a private local Ray is started)",
    )
    pred.add_argument(
        "--cpus-per-member",
        type=_typed(PREDICT_CONSTRAINTS, "cpus_per_member"),
        help="CPUs per member's actor (default: the cluster's CPUs shared evenly)",
    )
    pred.add_argument(
        "--gpus-per-member",
        type=_typed(PREDICT_CONSTRAINTS, "gpus_per_member"),
        help="GPUs per member's actor (default as for committee run)",
    )


def predict_command(args: argparse.Namespace) -> int:
    """``committee predict``, through :func:`guarded`: bad input is one line and exit status 2
    before Ray starts."""
    from committee.app.predict import predict, summary

    options = options_from(PredictOptions, args)

    def work() -> int:
        path, table = predict(options)
        print(summary(table))
        print(printable(f"predictions in {path}"))
        return 0

    return guarded(work, where=lambda: str(Path(options.output or ".").parent), then="rerun")


EXPORT_DESCRIPTION = """\
Write the committee of a finished run as one Keras model file: input float32 (n, 28, 28, 1)
images in [0, 1] (pixel / 255, light garment on a dark background), output float32 (n, 10)
committee probabilities. It loads with plain keras.saving.load_model(path, safe_mode=True),
no custom objects and no import of this package, on TensorFlow or JAX.

Built in: every member (the weights it predicts with), each member's test-time augmentation
as the run used it (horizontal mirror: keras.ops.flip; one-pixel shifts: ZeroPadding2D then
Cropping2D), and the fusion rule (--rule mean: Average; weighted: the run's weights, fitted
on validation data, as Rescaling then Add; geometric: keras.ops.log of the clipped
probabilities, Average, Softmax). So the file gives the run's committee probabilities
(predictions.parquet's committee_<rule>_proba) to float32 rounding, about 1e-6.
The file is written only after it has been loaded back in safe mode and checked against the
members' own predictions on probe images."""


def add_export_parser(sub) -> None:
    from committee.ensemble.fusion import RULES

    exp = sub.add_parser(
        "export",
        help="write a trained committee (members, TTA and rule) as one .keras model",
        description=EXPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    exp.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="the folder of a finished committee run"
    )
    exp.add_argument(
        "--rule",
        choices=RULES,
        help=f"the fusion rule built in (default {ExportOptions.rule}; weighted: the run's "
        "fitted weights)",
    )
    exp.add_argument(
        "--output",
        metavar="FILE",
        help=f"a new .keras file in an existing folder (default {ExportOptions.output} in "
        "the current folder)",
    )
    exp.add_argument(
        "--overwrite", action="store_true", help="replace the --output file if it exists"
    )


def export_command(args: argparse.Namespace) -> int:
    """``committee export``, through :func:`guarded`: bad input is one line and exit status 2
    before any model is loaded; so is a member that does not load (naming it)."""
    from committee.app.export import export

    options = options_from(ExportOptions, args)

    def work() -> int:
        path, _ = export(options)
        print(printable(f"committee model in {path}"))
        return 0

    return guarded(work, where=lambda: str(Path(options.output).parent), then="rerun")


def report_command(args: argparse.Namespace) -> int:
    """``committee report``, through :func:`guarded`: a run folder that cannot be drawn is one
    line naming the file and field (exit status 2) before any file is rewritten."""
    from committee.report.render import render

    def work() -> int:
        for path in render(args.run_dir):
            print(printable(str(path)))
        return 0

    return guarded(
        work,
        where=lambda: str(args.run_dir),
        then="rerun committee report",
        interrupted=lambda: (
            "committee: interrupted; each file is either redrawn or as it was: "
            "rerun committee report to redraw them all"
        ),
    )


SUBMIT_DESCRIPTION = """\
Submit `committee run` to a running Ray cluster as a Ray job (what `ray job submit ... --
python jobs/train_committee.py ...` does), then follow its logs until it ends.

The cluster's token is sent whenever one is found where Ray looks (RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), so it works against a head started with a plain
`ray start --head`, with or without token authentication. The options after `--` are
`committee run`'s, checked here before anything is sent; paths among them (--output,
--data-dir) are the cluster's. Exit status: the job's (0 once it succeeded; 2 for bad
options; 1 for a failed job); Ctrl-C detaches and leaves the job running."""


def add_submit_parser(sub) -> None:
    sub_ = sub.add_parser(
        "submit",
        help="submit a committee run to a Ray cluster as a Ray job and follow it",
        description=SUBMIT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub_.add_argument(
        "--address",
        help="the cluster's job server, http://HOST:PORT of its dashboard (default: "
        "$RAY_API_SERVER_ADDRESS, else an http address in $RAY_ADDRESS, else "
        f"{DEFAULT_JOB_SERVER})",
    )
    sub_.add_argument(
        "--submission-id",
        help="the job's id; Ray never reuses one (take the next, e.g. seed-try2)",
    )
    sub_.add_argument(
        "--working-dir",
        type=Path,
        help="the folder uploaded as the job's working folder (default: this project's, "
        "the folder holding jobs/train_committee.py)",
    )
    sub_.add_argument(
        "--runtime-env-json",
        metavar="JSON",
        help="more of the job's runtime environment, e.g. "
        '\'{"env_vars": {"FASHION_MNIST_DIR": "/shared/fashion-mnist"}}\'',
    )
    sub_.add_argument(
        "--no-wait", action="store_true", help="return once submitted; do not follow the logs"
    )
    sub_.add_argument(
        "run_args",
        nargs=argparse.REMAINDER,
        metavar="-- RUN_OPTIONS",
        help="committee run's options, after --",
    )


DEFAULT_JOB_SERVER = "http://127.0.0.1:8265"


def submit_command(args: argparse.Namespace) -> int:
    """``committee submit``, through :func:`guarded`: every option (the run's too) is checked
    before anything is sent (one line, exit 2); so is a job server that cannot be reached or
    refuses the token; otherwise the job's own exit status. Ctrl-C detaches (130): the job
    goes on."""
    from committee.distributed.submission import submit

    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    check = OneLineParser(prog="committee submit", argument_default=argparse.SUPPRESS)
    add_run_arguments(check)
    check.parse_args(run_args)  # exits 2 in one line on a bad run option

    def work() -> int:
        address, working_dir, runtime_env = _submission_options(args)
        return submit(
            address,
            run_args,
            working_dir,
            submission_id=args.submission_id,
            runtime_env=runtime_env,
            wait=not args.no_wait,
        )

    return guarded(work, interrupted=lambda: "committee: detached; the job goes on on the cluster")


def _submission_options(args: argparse.Namespace) -> tuple[str, Path, dict | None]:
    """``(job server address, working folder, runtime environment)`` of ``committee
    submit``'s options; UsageError naming the option otherwise."""
    import json
    from urllib.parse import urlsplit

    from committee.app.options import check_token_file
    from committee.distributed.cluster import auth_mode

    with usage_errors():  # what Ray's job client would otherwise fail on, or hang on (a FIFO)
        auth_mode()
        check_token_file()
    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address and os.environ.get("RAY_ADDRESS", "").startswith(("http://", "https://")):
        address = os.environ["RAY_ADDRESS"]
    address = address or DEFAULT_JOB_SERVER
    try:
        parts = urlsplit(address)
        usable = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and (parts.port is None or parts.port > 0)  # ValueError: out of range, not a number
            and address.isprintable()
            and " " not in address
        )
    except ValueError:
        usable = False
    if not usable:
        raise UsageError(
            f"--address {address!r} is not a job server address; expected http://HOST:PORT "
            "(the cluster dashboard's)"
        )
    working_dir = args.working_dir or Path(__file__).resolve().parents[2]
    if not (working_dir / "jobs" / "train_committee.py").is_file():
        raise UsageError(
            f"--working-dir {str(working_dir)!r} holds no jobs/train_committee.py; expected "
            "a copy of this project (its repository's folder)"
        )
    if args.runtime_env_json is None:
        return address, working_dir, None
    try:
        runtime_env = json.loads(args.runtime_env_json)
    except ValueError as exc:
        raise UsageError(f"--runtime-env-json is not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(
            "--runtime-env-json is nested too deeply; expected a flat object"
        ) from None
    if not isinstance(runtime_env, dict):
        raise UsageError('--runtime-env-json must be a JSON object, e.g. {"env_vars": {...}}')
    return address, working_dir, runtime_env


def run_command(args: argparse.Namespace) -> int:
    """``committee run`` or ``tune`` from parsed options, through :func:`guarded`; its error
    log is the run folder's logs/error.log once the folder is named."""
    from committee.app.run import run
    from committee.app.tune import tune

    options = options_from_args(args)
    command = tune if isinstance(options, TuneOptions) else run

    def work() -> int:
        run_dir = command(options)  # validates every option before anything starts
        print(printable(f"outputs in {run_dir}"))
        return 0

    def folder() -> Path:
        return options.run_dir() if options.run_name else Path(options.output)

    def interrupted() -> str:
        kept = (
            "the earlier run is kept"
            if options.overwrite
            else "finished members and checkpoints are kept"
        )
        return (
            f"committee: interrupted; {kept} in {folder()}: rerun with the same "
            f"--run-name{' and --overwrite' if options.overwrite else ''} to "
            f"{'start over' if options.overwrite else 'resume'}"
        )

    return guarded(
        work,
        run_dir=lambda: options.run_dir() if options.run_name else None,
        where=lambda: str(folder()),
        interrupted=interrupted,
    )


# Conditions a user can act on, each one line naming the value or file: exit status 2.
KNOWN = (
    CommitteeError,
    InputError,
    FileExistsError,
    PermissionError,
    FileNotFoundError,
    ConnectionError,
)
# A file system that refuses a write for a reason its error names (read-only, out of quota,
# a name too long for it, a file too large): one line naming the file, exit status 2.
REFUSED_WRITES = frozenset({errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG, errno.EFBIG})


def guarded(
    work: Callable[[], int],
    *,
    run_dir: Callable[[], Path | None] = lambda: None,
    where: Callable[[], str] = lambda: ".",
    then: str = RESUME,
    interrupted: Callable[[], str] = lambda: "committee: interrupted; nothing was written",
) -> int:
    """Every command's error boundary: ``work()``'s exit status, or what its exception means
    (README, "Exit status"). A known condition (:data:`KNOWN`, a full disk, a write the file
    system refuses) is one line and 2; Ctrl-C prints ``interrupted()`` and gives 130, SIGTERM
    the same and 143; anything else is one line naming the file that holds its traceback
    (``run_dir()``'s logs/error.log, else a temporary file) and 1. ``where``: the folder
    written, for a full disk whose error names no file; ``then``: what to do once space is
    freed. Afterwards the process's Ray, if it started one, is shut down with a second Ctrl-C
    or SIGTERM ending the process at once in one line (not a traceback from Ray's shutdown);
    the SIGINT and SIGTERM handlers are put back as they were."""
    main_thread = threading.current_thread() is threading.main_thread()
    saved = (
        [(s, signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)] if main_thread else []
    )
    interrupt_on_signals()
    try:
        try:
            return work()
        except BaseException as exc:
            _stop_on_next_signal()  # what follows is the way out: never a second traceback
            interrupt = _interruption(exc)
            if interrupt is not None and interrupt is not exc:
                raise interrupt from None  # what a library turned the interrupt into
            raise
    except KNOWN as exc:
        _error(_file_error(exc) if isinstance(exc, OSError) else exc)
        return 2
    except OSError as exc:
        if exc.errno == errno.ENOSPC or isinstance(exc, DiskFull):
            _error(disk_full(exc, where(), then).strerror)
            return 2
        if exc.errno in REFUSED_WRITES and exc.filename:
            _error(_file_error(exc))
            return 2
        return _unexpected(exc, run_dir())
    except KeyboardInterrupt as exc:
        print(printable(interrupted()), file=sys.stderr)
        return _exit_status(exc)
    except Exception as exc:  # noqa: BLE001 - not bad input: its traceback must not be lost
        return _unexpected(exc, run_dir())
    finally:
        _stop_on_next_signal()
        from committee.distributed.cluster import disconnect

        disconnect()
        for signum, handler in saved:
            if handler is not None:
                signal.signal(signum, handler)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: bytes the file system's decoding could not map
        return False
    return True


def _file_error(exc: OSError) -> str:
    """An OSError from the system as "<file>: <what the system said>" (a rename's: the file it
    would replace); the project's own, which carry no errno, as their message."""
    if exc.errno is None or not exc.filename:
        return str(exc)
    return f"{exc.filename2 or exc.filename}: {exc.strerror}"


# The signal that interrupted this process's command, if one did: Ray's C++ turns an exception
# raised in a handler while it waits (ray.get, ray.wait) into a new, plain KeyboardInterrupt,
# and a Terminated's signal number would be lost with it.
_received: int | None = None


def _exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the number of the signal behind ``interrupt``: its own (Terminated), else the one
    this process's handler last received, else SIGINT's (130)."""
    if isinstance(interrupt, Terminated):
        return 128 + interrupt.signum
    return 128 + (_received or signal.SIGINT)


def interrupt_on_signals() -> None:
    """Turn Ctrl-C into KeyboardInterrupt and SIGTERM (kill, `ray job stop`) into
    :class:`~committee.errors.Terminated` (a KeyboardInterrupt), so the command stops cleanly
    and exits 130 or 143; the first signal also arms :func:`_stop_on_next_signal`, so a second
    one, sent while the first is still unwinding through Ray's clean-up, ends the process at
    once in one line (it would otherwise interrupt that clean-up half-way, and Ray's core
    worker then ends the process with status 1). ``ray.init`` installs a SIGTERM handler of
    its own; :func:`committee.distributed.cluster.connect` puts this one back. A SIGINT that
    is ignored (``nohup``, a background job) stays ignored."""

    def handler(signum, frame):
        global _received
        _received = signum
        _stop_on_next_signal()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    global _received
    _received = None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, handler)


def _stop_on_next_signal() -> None:
    """From now on, Ctrl-C or SIGTERM ends the process at once with one line and 128 + the
    signal's number: sent while a command stops or Ray shuts down, a KeyboardInterrupt would
    surface as a traceback from wherever it landed (Ray's atexit shutdown, a thread's join)."""

    def handler(signum, frame):
        sys.stdout.flush()
        print(
            "committee: interrupted while stopping; exited without waiting for it", file=sys.stderr
        )
        sys.stderr.flush()
        if "ray" in sys.modules:  # else it started no Ray: nothing to stop
            from committee.distributed.cluster import kill_private_ray

            kill_private_ray()
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup, `cmd &`: left ignored
                signal.signal(signum, handler)


def _error(message: BaseException | str) -> None:
    """The command's one line on stderr for a known condition (exit 2), what is not printable
    in it escaped (log.printable): a file name cannot end the line and forge another."""
    print(f"committee: error: {printable(str(message))}", file=sys.stderr)


def _unexpected(exc: BaseException, run_dir: Path | None) -> int:
    """Report an unexpected failure in one line naming the log of its traceback (``run_dir``'s
    logs/error.log when it is a run folder, else a temporary file); exit 1."""
    log = log_failure(exc, run_dir)
    first = one_line(exc, 300, pick="first", empty="")
    _error(f"unexpected {type(exc).__name__}: {first} (traceback in {log})")
    return 1


def log_failure(exc: BaseException, run_dir: Path | None) -> Path:
    """Write ``exc``'s full traceback to ``<run_dir>/logs/error.log`` when the run folder
    exists, else to a new temporary file; return the file's path. Never raises OSError: a
    log that cannot be written there (a link where it goes included: runfolder.write_text never
    writes through one) goes to the temporary file."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(exc))
    if run_dir is not None and run_dir.is_dir():
        path = run_dir / LOGS / "error.log"
        try:
            write_text(path, text, run_dir)
            return path
        # the disk that failed the run, or a link where the log goes (never written through)
        except (OSError, RunFolderError):
            pass
    fd, name = tempfile.mkstemp(prefix="committee-error-", suffix=".log")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    """The ``committee`` command: its exit status (README, "Exit status"). ``argv`` None: this
    process is the command (the console script, ``python -m committee``), run by
    :func:`as_process`; else it is called in-process and leaves the signal handlers as found."""
    if argv is None:
        return as_process(lambda: _main(None))
    return _main(argv)


def _main(argv: list[str] | None) -> int:
    log.setup()
    for arg in sys.argv[1:] if argv is None else argv:
        if not _utf8(arg):
            # Ray hands a driver's command line to its core worker as UTF-8 and fails there
            _error(
                f"argument {arg!r} is not valid UTF-8 (a file name's raw bytes); expected UTF-8 "
                "names: rename the file, or name its folder instead"
            )
            return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by a local Ray's workers
    args = build_parser().parse_args(argv)
    commands = {
        "run": run_command,
        "tune": run_command,
        "predict": predict_command,
        "export": export_command,
        "report": report_command,
        "submit": submit_command,
    }
    return commands[args.command](args)


def as_process(command: Callable[[], int]) -> int:
    """``command()``'s exit status, as the one command of this process (``committee``,
    jobs/train_committee.py): Ctrl-C and SIGTERM interrupt it from the start
    (:func:`interrupt_on_signals`), also while it imports its libraries before its own
    boundary (:func:`guarded`) begins (one line; 130 or 143), and a signal while the process
    then exits (threads joined, Ray's own atexit shutdown) ends it at once in one line. One
    arriving after the last atexit callback is ignored, rather than killing the process
    mid-teardown by the signal (Python puts the default handlers back there) in place of the
    command's exit status."""

    def ignore() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)

    # atexit runs callbacks last-registered first: this one, registered before Ray is
    # imported, runs after Ray's shutdown; the stop handler covers the way there
    atexit.register(ignore)
    interrupt_on_signals()
    try:
        status = command()
    except BaseException as exc:  # before the command's boundary: nothing written yet
        interrupt = _interruption(exc)
        if interrupt is None:
            raise
        print("committee: interrupted; nothing was written", file=sys.stderr)
        status = _exit_status(interrupt)
    _stop_on_next_signal()
    return status


def _interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``exc``: itself, or one in its chain of causes (a C
    extension interrupted while it initialises raises ImportError from it), else None. A
    deliberate exit (SystemExit) is never one."""
    if isinstance(exc, SystemExit):
        return None
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
