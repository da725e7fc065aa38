"""The options of ``committee run``, ``tune`` and ``predict``: one dataclass each, their defaults
(the one place they are written: the command line reads them from here), and the table of
constraints each is checked against before anything starts (:mod:`committee.validation`).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from committee import validation
from committee.data import fashion_mnist as data_mod
from committee.distributed import address as address_mod
from committee.distributed import cluster
from committee.ensemble import fusion
from committee.members import seeds
from committee.members import spec as members_mod
from committee.rundir import folder as runfolder
from committee.rundir import storage
from committee.training import backend as backend_mod
from committee.validation import Interval, Options


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
    config: str | None = None  # a search's best_configs.json: the members' hyper-parameters

    def specs(self) -> list[members_mod.MemberSpec]:
        """The members to train: the preset's (those of ``members``, else those ``config``
        names, else all), each with its configuration from ``config`` applied, then the
        overrides (``epochs``, ``batch_size``, ``learning_rate``: the command line wins).
        Raises ValueError on bad values, naming the config file and key for its own."""
        configs = self.member_configs
        names = self.members
        if configs is not None:
            members_mod.select_members(self.preset)  # an unknown preset is named first
            preset = {spec.name: spec for spec in members_mod.PRESETS[self.preset]}
            for name in configs:
                _configured_member(self.config, name, self.preset, preset, names)
            if names is None:
                names = [name for name in preset if name in configs]
        specs = members_mod.select_members(self.preset, names)
        if configs is not None:
            specs = [_configured(self.config, spec, configs.get(spec.name, {})) for spec in specs]
        changes = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        return [spec.with_overrides(**changes) if changes else spec for spec in specs]

    @functools.cached_property
    def member_configs(self) -> dict[str, dict] | None:
        """``config``'s content (member -> {key: value}), read once and checked in form
        (:func:`read_member_configs`); None without ``config``."""
        return None if self.config is None else read_member_configs(self.config)

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


MAX_CONFIG_BYTES = 1 << 20  # a best_configs.json is well under 1 kB


def read_member_configs(path: str | os.PathLike) -> dict[str, dict]:
    """The members' configurations in ``path`` (``committee tune``'s best_configs.json: an
    object of member -> {key: value}, a key a tunable MemberSpec field
    (members.spec.TUNABLE_FIELDS) or ``arch.<builder keyword>``, a value a JSON number,
    string or boolean). Raises ValueError in one line naming the file (and the member and
    key) and what was expected; the values are checked against each member's spec by
    :meth:`RunOptions.specs`."""
    where = f"--config {path}"
    expected = "expected the best_configs.json of a search (committee tune)"
    try:
        with open(Path(path).expanduser(), "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{where}: cannot be read ({exc.strerror or exc}); {expected}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"{where}: larger than {MAX_CONFIG_BYTES:,} bytes; {expected}")
    try:
        configs = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{where}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); {expected}"
        ) from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, huge integers, deep nesting
        raise ValueError(f"{where}: not valid JSON ({type(exc).__name__}); {expected}") from None
    if not isinstance(configs, dict) or not configs:
        raise ValueError(
            f"{where}: holds {type(configs).__name__ if configs else 'nothing'}; expected an "
            'object of member -> settings, e.g. {"model1": {"learning_rate": 0.002}}'
        )
    tunable = ", ".join(sorted(members_mod.TUNABLE_FIELDS))
    for name, config in configs.items():
        if not isinstance(config, dict) or not config:
            raise ValueError(
                f"{where}: member {name!r} has {config!r}; expected an object of its "
                f'settings, e.g. {{"learning_rate": 0.002}}'
            )
        for key, value in config.items():
            if members_mod.split_arch_key(key) is None and key not in members_mod.TUNABLE_FIELDS:
                raise ValueError(
                    f"{where}: key {key!r} of member {name!r} is unknown; expected one of "
                    f"{tunable} or arch.<builder keyword>"
                )
            if not isinstance(value, (int, float, str, bool)):
                raise ValueError(
                    f"{where}: key {key!r} of member {name!r} has {value!r}; expected a "
                    "number, a string or a boolean"
                )
    return configs


def _configured_member(path, name: str, preset: str, members: dict, chosen) -> None:
    """Raise ValueError unless the member ``name`` that config file ``path`` configures is in
    the run's preset (``members``: its specs by name) and among ``chosen`` (--members)."""
    if name not in members:
        others = [p for p, specs in members_mod.PRESETS.items() if name in {s.name for s in specs}]
        hint = f" (member of preset {others[0]!r}: pass --preset {others[0]})" if others else ""
        raise ValueError(
            f"--config {path}: member {name!r} is not in preset {preset!r}; expected one of "
            f"{', '.join(members)}{hint}"
        )
    if chosen is not None and name not in chosen:
        raise ValueError(
            f"--config {path}: member {name!r} is not among --members {','.join(chosen)}; "
            f"expected the file's members, or add {name} to --members"
        )


def _configured(path, spec: members_mod.MemberSpec, config: dict) -> members_mod.MemberSpec:
    """``spec`` with ``config`` applied key by key, so that a bad value names its key."""
    for key, value in config.items():
        try:
            spec = members_mod.apply_config(spec, {key: value})
        except ValueError as exc:
            reason = str(exc).removeprefix(f"member {spec.name!r}: ")
            raise ValueError(
                f"--config {path}: key {key!r} of member {spec.name!r}: {reason}"
            ) from None
    return spec


# Ceilings of the numeric options: every number an option takes is finite and within what
# the layer below it accepts, so a value that passes here cannot fail after Ray starts.
MAX_BUDGET_S = 365 * 24 * 3600  # a year: a budget's seconds (minutes * 60) stay finite, exact
MAX_MINUTES = MAX_BUDGET_S // 60
RESOURCE_STEP = 0.0001  # Ray counts CPUs and GPUs in units of 0.0001 (less is refused or cut)
MAX_RESOURCE = 1_000_000  # per member: beyond any node; Ray's int64 units of 0.0001 hold it
MAX_COUNT = 10_000  # retries, trials, concurrent trials
MAX_STEPS = 60_000  # steps per execution: never more than the training set's images
MAX_PREDICT_BATCH = 1_000_000  # images per Ray Data batch


CPUS = Interval(float, 0, MAX_RESOURCE, closed="right", noun="a number", step=RESOURCE_STEP)
GPUS = Interval(float, 0, MAX_RESOURCE, closed="both", noun="a number", step=RESOURCE_STEP)


# RunOptions' simple constraints, checked in this order (committee.validation); the preset,
# --members and the members' overrides (--epochs, --batch-size, --learning-rate) are checked
# by RunOptions.specs() (members.select_members, members.SPEC_CONSTRAINTS), and the command
# line refuses the same values earlier, while parsing (cli builds its types from these tables).
RUN_CONSTRAINTS = {
    "split": Options(data_mod.SPLITS),
    "limit_train": [None, Interval(int, 10, 60_000, closed="both")],
    "cpus_per_member": [None, CPUS],
    "gpus_per_member": [None, GPUS],
    "workers_per_member": Interval(int, 1, MAX_COUNT, closed="both"),  # then: only 1
    "max_failures": Interval(int, 0, MAX_COUNT, closed="both"),
    "steps_per_execution": Interval(int, 1, MAX_STEPS, closed="both"),
    "member_minutes": [
        None,
        Interval(float, 0, MAX_MINUTES, closed="right", noun="a finite number"),
    ],
}


# The environment variables the product reads and that can be wrong, checked with every
# command's options before Ray starts, each in one line naming the variable (an empty one is
# unset). RAY_ADDRESS's form is checked with --address (address.resolve), FASHION_MNIST_DIR
# with --data-dir when the data is looked up (data.fashion_mnist.resolve_data_dir).
ENVIRONMENT = {
    cluster.AUTH_ENV: [None, Options(cluster.AUTH_MODES)],  # unset: token
    "KERAS_BACKEND": [None, Options(backend_mod.BACKENDS)],
}


def _token_file(environ: SimpleNamespace) -> None:
    path = environ.RAY_AUTH_TOKEN_PATH
    if path is not None and not (Path(path).is_file() and os.access(path, os.R_OK)):
        raise ValueError(
            f"RAY_AUTH_TOKEN_PATH {path!r} is not a readable file; expected the file "
            "holding Ray's token (or unset it)"
        )


def check_token_file(environ=os.environ) -> None:
    """Raise ValueError unless ``RAY_AUTH_TOKEN_PATH`` is unset or a readable regular file
    (a FIFO there would block Ray's token loader)."""
    _token_file(SimpleNamespace(RAY_AUTH_TOKEN_PATH=environ.get("RAY_AUTH_TOKEN_PATH") or None))


def check_environment(environ=os.environ) -> None:
    """Raise ValueError naming the first variable of :data:`ENVIRONMENT` (then
    RAY_AUTH_TOKEN_PATH) whose value is not one the product takes."""
    names = (*ENVIRONMENT, "RAY_AUTH_TOKEN_PATH")
    values = SimpleNamespace(**{name: environ.get(name) or None for name in names})
    validation.check(values, ENVIRONMENT, [_token_file], name=str)


def _environment(options) -> None:
    check_environment()


def _one_worker_per_member(options: RunOptions) -> None:
    if options.workers_per_member != 1:
        raise ValueError(
            f"--workers-per-member {options.workers_per_member} is not supported; expected 1. "
            "Keras 3 fails under MultiWorkerMirroredStrategy with 2 or more workers "
            "(ray-project/ray#47464, keras-team/keras#20585); each member trains on one worker"
        )


def _seed_in_range(options: RunOptions) -> None:
    seeds.check_seed(options.seed)


def _plain_run_name(options: RunOptions) -> None:
    if options.run_name is not None:
        check_run_name(options.run_name)


def _address_form(options: RunOptions | PredictOptions) -> None:
    address, _ = address_mod.resolve(options.address)  # connect() checks that a head answers
    if not address:  # a private local Ray: its folder for files and sockets must do
        cluster.check_ray_temp_dir()


def _writable_output(options: RunOptions) -> None:
    runfolder.check_writable(options.output)


def _usable_storage(options: RunOptions) -> None:
    storage.check_storage(options.storage)


def _known_backend(options: RunOptions) -> None:
    """Fixes ``backend`` (--backend, else KERAS_BACKEND, else tensorflow) for the run; its
    package must be installed here (the workers import it after Ray starts)."""
    options.backend = backend_mod.resolve(options.backend, installed=True)


# RunOptions' other checks, after the table, in this order.
RUN_CHECKS = (
    _environment,
    _one_worker_per_member,
    _seed_in_range,
    _plain_run_name,
    _address_form,
    _writable_output,
    _usable_storage,
    _known_backend,
)


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
    if (
        not name
        or "/" in name
        or "\\" in name
        or name in (".", "..")
        or name.startswith(".")
        or name != name.strip()
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise ValueError(
            f"--run-name {name!r} must be a plain folder name (no '/', no control "
            f"characters, no leading or trailing space, not starting with '.')"
        )
    if len(name.encode("utf-8")) > MAX_RUN_NAME_BYTES:
        raise ValueError(
            f"--run-name of {len(name.encode('utf-8'))} bytes is too long; "
            f"expected at most {MAX_RUN_NAME_BYTES} bytes"
        )
    return name


MAX_RUN_NAME_BYTES = 245


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
    "num_samples": Interval(int, 1, MAX_COUNT, closed="both"),
    "max_concurrent": [None, Interval(int, 1, MAX_COUNT, closed="both")],
    "time_budget_s": [
        None,
        Interval(float, 0, MAX_BUDGET_S, closed="right", noun="a finite number"),
    ],
    "scheduler": Options(_schedulers),
}


def _no_member_minutes(options: TuneOptions) -> None:
    if options.member_minutes is not None:
        raise ValueError(
            f"--member-minutes {options.member_minutes:g} applies to committee "
            "run; bound a search with --time-budget-s"
        )


def _searchable_members(options: TuneOptions) -> None:
    """Every member has a search space, valid for its spec and ``--epochs``."""
    from committee.distributed.tuning import member_space

    for spec in options.specs():
        if spec.name not in members_mod.SEARCH_SPACES:
            raise ValueError(
                f"member {spec.name!r} has no search space; expected one of "
                f"{', '.join(members_mod.SEARCH_SPACES)}"
            )
        member_space(spec, options.epochs)


TUNE_CHECKS = (_no_member_minutes, _searchable_members)


def validate_tune(options: TuneOptions) -> list[members_mod.MemberSpec]:
    if options.config is not None:
        raise ValueError(
            f"--config {options.config} applies to committee run (training the members "
            "with a search's best configurations), not to a search"
        )
    specs = validate(options)
    validation.check(options, TUNE_CONSTRAINTS, TUNE_CHECKS)
    return specs


# --------------------------------------------------------------------------- predict


@dataclass
class PredictOptions:
    run_dir: str | os.PathLike
    inputs: list[str]
    output: str | None = None  # default: ./predictions-<run name>-<timestamp>.parquet
    rule: str = fusion.MEAN
    invert: bool = False
    batch_size: int = 1024
    address: str | None = None
    cpus_per_member: float | None = None
    gpus_per_member: float | None = None


# PredictOptions' simple constraints, checked in this order (committee.validation); the run
# folder, --output and the inputs are checked by validate, in the order a user fixes them.
PREDICT_CONSTRAINTS = {
    "rule": Options(fusion.RULES),
    "batch_size": Interval(int, 1, MAX_PREDICT_BATCH, closed="both"),
    "cpus_per_member": [None, CPUS],
    "gpus_per_member": [None, GPUS],
}


def _predict_backend(options: PredictOptions) -> None:
    from committee.training.backend import resolve

    resolve(None, installed=True)  # KERAS_BACKEND, the actors'; fails before Ray starts


PREDICT_CHECKS = (_environment, _address_form, _predict_backend)


# --------------------------------------------------------------------------- export


@dataclass
class ExportOptions:
    run_dir: str | os.PathLike
    output: str = "committee.keras"  # in the current folder
    rule: str = fusion.MEAN
    overwrite: bool = False


EXPORT_CONSTRAINTS = {"rule": Options(fusion.RULES)}

EXPORT_CHECKS = (_environment, _predict_backend)
