"""Committee members described as data: member specs, schedules, presets and search spaces.

A member is a :class:`MemberSpec` — a name, its architecture (a builder in
:mod:`committee.members.architectures`, with keyword arguments), an optimizer, a learning
rate, a batch size, an epoch ceiling and its callbacks' settings. A preset is a tuple of
specs. The trainer only ever reads specs, so a preset can be added here without touching
training or orchestration code.

The ``seed`` preset is the user's notebook, exactly (see ../shared/docs/seed-notebook.md):

=========  =========  ==========  ======  ==========
member     optimizer  lr          batch   parameters
=========  =========  ==========  ======  ==========
model1     adam       0.001       32      298,058
model2     sgd        0.01        16      14,058
model3     adagrad    0.001       64      99,946 (99,498 trainable)
=========  =========  ==========  ======  ==========
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from committee.data.augmentation import AUGMENTATION_CONSTRAINTS
from committee.members.architectures import ARCH_CONSTRAINTS, ARCHITECTURES
from committee.members.tta import (
    TTA_MODES,  # mode -> views averaged, defined with the views
)
from committee.validation import Interval, Options, check

# "nesterov": SGD with Nesterov momentum 0.9, the optimizer of the fast CIFAR-10 recipes
# (airbench, Page's DAWNBench ResNet), with Keras' decoupled weight decay 5e-3, which shrinks
# the weights as much per step as their coupled 5e-4 does under that momentum; "sgd" is plain.
OPTIMIZERS = ("adam", "sgd", "adagrad", "rmsprop", "adamw", "nesterov")


# --------------------------------------------------------------------------- learning rate

SCHEDULES = ("seed", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def cosine_schedule(epoch: int, initial_lr: float, epochs: int, warmup: int = 1) -> float:
    """Linear warm-up for ``warmup`` epochs, then cosine decay to ~0 at the last epoch."""
    if epoch < warmup:
        return initial_lr * (epoch + 1) / (warmup + 1)
    progress = (epoch - warmup) / max(1, epochs - warmup)
    return initial_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def seed_schedule(
    epoch: int, initial_lr: float, hold_epochs: int = 10, decay: float = 0.1
) -> float:
    """The seed's LearningRateScheduler as a pure function of the epoch index.

    The notebook keeps the rate for epochs 0..9 and then multiplies it by exp(-0.1) each epoch;
    written as a closed form it needs no state, so a resumed run gets the same rate.
    """
    return initial_lr * math.exp(-decay * max(0, epoch - (hold_epochs - 1)))


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class MemberSpec:
    """One committee member, fully described by data."""

    name: str
    architecture: str
    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int = 20
    patience: int = 5  # EarlyStopping(monitor="val_loss", patience=...)
    arch_params: dict[str, Any] = field(default_factory=dict)
    expected_params: int | None = None  # documented parameter count, checked by tests
    schedule: str = "seed"  # learning-rate schedule: "seed" or "cosine"
    precision: str = "float32"  # Keras dtype policy: float32, mixed_bfloat16, mixed_float16
    tta: str = "none"  # test-time augmentation: none, mirror or mirror+shifts (prediction.py)
    # Training-time augmentation of each batch (augmentation.Augmentation): the largest
    # translation as a fraction of the side, horizontal flips, random erasing's factor.
    shift: float = 0.0
    flip: bool | str = False  # or "alternate" (augmentation.Augmentation)
    erasing: float = 0.0
    # Label smoothing of the cross-entropy's targets (keras.losses.CategoricalCrossentropy).
    label_smoothing: float = 0.0
    # Polyak averaging: the optimizer keeps an exponential moving average of the weights with
    # this momentum (Keras' use_ema / ema_momentum), validation and predictions use it; 0: off.
    ema_momentum: float = 0.0

    def __post_init__(self):
        validate_spec(self)

    def with_overrides(self, **changes) -> MemberSpec:
        """This spec with ``changes`` (field name -> value) applied, validated like any spec.

        Raises ValueError naming the member and the first unknown field (``member 'vgg':
        'bogus' is not a member setting; expected one of ...``) or the first bad value."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = [key for key in changes if key not in names]
        if unknown:
            hint = (
                f" (a builder keyword goes in arch_params: 'arch.{unknown[0]}' in a "
                f"search space or --set)"
                if unknown[0] in ARCH_CONSTRAINTS
                else ""
            )
            raise ValueError(
                f"member {self.name!r}: {unknown[0]!r} is not a member setting; "
                f"expected one of {', '.join(sorted(names))}{hint}"
            )
        return replace(self, **changes)

    def learning_rate_at(self, epoch: int, epochs: int | None = None) -> float:
        """The learning rate of epoch ``epoch`` of a run of ``epochs`` epochs (default: the
        spec's; a time budget may plan fewer). A pure function: resumption-safe."""
        if self.schedule == "cosine":
            return cosine_schedule(epoch, self.learning_rate, epochs or self.epochs)
        return seed_schedule(epoch, self.learning_rate)

    def build(self, precision: str | None = None):
        """Return the (uncompiled) Keras model, its layers under the dtype policy ``precision``
        (default: the spec's). The global policy is restored afterwards: layers keep theirs."""
        import keras

        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision or self.precision)
        try:
            return ARCHITECTURES[self.architecture](**self.arch_params)
        finally:
            keras.mixed_precision.set_global_policy(previous)

    @property
    def augmentation(self):
        """The :class:`~committee.data.augmentation.Augmentation` of its training batches."""
        from committee.data.augmentation import Augmentation

        return Augmentation(shift=self.shift, flip=self.flip, erasing=self.erasing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Fields added after run folders began recording their members' specs, each with the value
# that trains as before it existed: at that value a run's identity leaves it out
# (identity.member_identity), so an unfinished run made before it still resumes.
SPEC_FIELDS_ADDED_LATER: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(MemberSpec)
    if f.name in ("label_smoothing", "ema_momentum")
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Ceilings: every number finite and within what Keras takes (a schedule's steps, epochs x
# batches, stay exact); far above any useful value.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 60_000  # the training set's images: a larger batch is the same batch
MAX_LEARNING_RATE = 1e38  # Keras holds it in float32 (largest 3.4e38); too large diverges
# float32's smallest normal number: a learning rate below it becomes 0 (or a denormal that
# the CPU kernels flush to 0) in the optimizer's float32 variable, and nothing would train.
MIN_LEARNING_RATE = 1.1754943508222875e-38

# What each field of a MemberSpec may hold (committee.validation), checked in this order for
# every spec, its overrides (--epochs, --batch-size, --learning-rate) and each configuration
# of a search included.
SPEC_CONSTRAINTS = {
    "architecture": Options(ARCHITECTURES),
    "optimizer": Options(OPTIMIZERS),
    "learning_rate": Interval(
        float, MIN_LEARNING_RATE, MAX_LEARNING_RATE, closed="both", noun="a number"
    ),
    "batch_size": Interval(int, 1, MAX_BATCH_SIZE, closed="both", noun="an integer"),
    "epochs": Interval(int, 1, MAX_EPOCHS, closed="both", noun="an integer"),
    "schedule": Options(SCHEDULES),
    "patience": Interval(int, 0, MAX_EPOCHS, closed="both", noun="an integer"),
    "precision": Options(PRECISIONS),
    **AUGMENTATION_CONSTRAINTS,  # shift, erasing, flip
    "label_smoothing": Interval(float, 0, 1, closed="left", noun="a number"),
    "ema_momentum": Interval(float, 0, 1, closed="left", noun="a number"),
    "tta": Options(TTA_MODES),
}


def validate_spec(spec: MemberSpec) -> None:
    """Raise ValueError naming the member, the field, the bad value and what was expected
    (``member 'model1': batch size 0 must be an integer > 0``), or an architecture keyword
    its builder does not take or a value it cannot (``architectures.ARCH_CONSTRAINTS``)."""
    check(
        spec,
        SPEC_CONSTRAINTS,
        [_check_arch_params],
        name=lambda field: f"member {spec.name!r}: {field.replace('_', ' ')}",
    )


def _check_arch_params(spec: MemberSpec) -> None:
    """The builder's keywords and their values are checked here, when the spec is made: a
    wrong one would otherwise surface from inside Keras model building, in a Ray worker."""
    import inspect

    if not isinstance(spec.arch_params, dict):
        raise ValueError(
            f"member {spec.name!r}: arch params {spec.arch_params!r} must be a "
            f"dict of the {spec.architecture} builder's keywords"
        )
    taken = inspect.signature(ARCHITECTURES[spec.architecture]).parameters
    for key, value in spec.arch_params.items():
        if key not in taken:
            raise ValueError(
                f"member {spec.name!r}: {spec.architecture} has no parameter "
                f"{key!r}; expected one of {', '.join(taken)}"
            )
        if not ARCH_CONSTRAINTS[key].accepts(value):
            raise ValueError(
                f"member {spec.name!r}: arch.{key} {ARCH_CONSTRAINTS[key].describe(value)}"
            )


SEED_PRESET: tuple[MemberSpec, ...] = (
    MemberSpec("model1", "model1", "adam", 0.001, 32, expected_params=298_058),
    MemberSpec("model2", "model2", "sgd", 0.01, 16, expected_params=14_058),
    MemberSpec("model3", "model3", "adagrad", 0.001, 64, expected_params=99_946),
)

# Three deliberately different families, with augmentation (of the batches), AdamW and a
# cosine schedule; early stopping is effectively off (patience = epochs) so the schedule runs
# to its end, and ten-view TTA. Sizes, batch, shifts and dropout were chosen on the slower
# 2-core CPU seen here (AMD EPYC, AVX2, float32) so a run fits 45 minutes; the epochs are
# ceilings for the time budget (PRESET_MEMBER_MINUTES). Resnet and wide start with a frozen
# patch-whitening layer set from the training data (probes: +0.004 to +0.007 validation
# accuracy; vgg's probe lost). What was tried, with every probe and full-run figure:
# docs/strong-preset-log.md.
_STRONG = dict(
    optimizer="adamw",
    batch_size=64,
    epochs=30,
    patience=30,
    schedule="cosine",
    precision="mixed_bfloat16",
    tta="mirror+shifts",
    shift=0.05,
    flip=True,
    erasing=0.1,
)
STRONG_PRESET: tuple[MemberSpec, ...] = (
    MemberSpec("vgg", "vgg", learning_rate=0.002, expected_params=420_890, **_STRONG),
    MemberSpec(
        "resnet",
        "resnet",
        learning_rate=0.002,
        arch_params={"whiten": 3},
        expected_params=173_332,
        **_STRONG,
    ),
    MemberSpec(
        "wide",
        "wide",
        learning_rate=0.001,
        arch_params={"whiten": 4},
        expected_params=1_655_818,
        **_STRONG,
    ),
)

PRESETS: dict[str, tuple[MemberSpec, ...]] = {"seed": SEED_PRESET, "strong": STRONG_PRESET}

# Each member's time budget in minutes (training and prediction) for a run of the preset
# that names no --member-minutes and no --epochs. The job adds about a minute (start-up,
# scoring), so a strong run takes ~43 minutes on a 2-core CPU, whatever its speed.
PRESET_MEMBER_MINUTES: dict[str, float] = {"strong": 42.0}


# --------------------------------------------------------------------------- search spaces
# Declared next to the specs, as data: field -> (kind, *arguments). Kinds: "loguniform" and
# "uniform" (low, high), "choice" (list of values), "randint" (low, high exclusive). A key
# "arch.NAME" sets the builder's keyword NAME; other keys set MemberSpec fields.

SEARCH_KINDS = ("loguniform", "uniform", "choice", "randint")
ARCH_PREFIX = "arch."


def split_arch_key(key: str) -> str | None:
    """The builder keyword a search-space or config key sets (``"arch.filters"`` ->
    ``"filters"``), or None when ``key`` names a MemberSpec field (``"learning_rate"``)."""
    return key[len(ARCH_PREFIX) :] if key.startswith(ARCH_PREFIX) else None


SEARCH_SPACES: dict[str, dict[str, tuple]] = {
    "model1": {
        "learning_rate": ("loguniform", 1e-4, 1e-2),
        "batch_size": ("choice", [32, 64, 128]),
        "optimizer": ("choice", ["adam", "rmsprop", "adamw"]),
        "arch.filters": ("choice", [32, 64]),
        "arch.dense_units": ("choice", [128, 256, 512]),
        "epochs": ("choice", [10, 20]),
    },
    "model2": {
        "learning_rate": ("loguniform", 1e-3, 1e-1),
        "batch_size": ("choice", [16, 32, 64]),
        "optimizer": ("choice", ["sgd", "adam"]),
        "arch.dropout": ("uniform", 0.0, 0.5),
        "arch.dense_units": ("choice", [64, 128, 256]),
        "epochs": ("choice", [10, 20]),
    },
    "model3": {
        "learning_rate": ("loguniform", 1e-4, 1e-1),
        "batch_size": ("choice", [32, 64, 128]),
        "optimizer": ("choice", ["adagrad", "adam"]),
        "arch.dropout": ("uniform", 0.1, 0.5),
        "arch.dense_units": ("choice", [64, 128, 256]),
        "epochs": ("choice", [10, 20]),
    },
    # The strong members: their rate, size, regularisation and augmentation, around the
    # preset's values (docs/strong-preset-log.md); the epoch ceilings stay the preset's
    # unless --epochs fixes them, since a search's budget bounds its trials.
    "vgg": {
        "learning_rate": ("loguniform", 5e-4, 5e-3),
        "arch.width": ("choice", [12, 16, 24]),
        "arch.dropout": ("uniform", 0.1, 0.4),
        "erasing": ("uniform", 0.0, 0.3),
        "shift": ("uniform", 0.0, 0.1),
    },
    "resnet": {
        "learning_rate": ("loguniform", 5e-4, 5e-3),
        "arch.width": ("choice", [16, 24, 32]),
        "erasing": ("uniform", 0.0, 0.3),
        "shift": ("uniform", 0.0, 0.1),
    },
    "wide": {
        "learning_rate": ("loguniform", 3e-4, 3e-3),
        "arch.filters": ("choice", [24, 32]),
        "arch.dropout": ("uniform", 0.0, 0.3),
        "erasing": ("uniform", 0.0, 0.3),
        "shift": ("uniform", 0.0, 0.1),
    },
}


# The MemberSpec fields a search space or a configuration (best_configs.json, committee run
# --config) may set, besides ``arch.<builder keyword>``.
TUNABLE_FIELDS = frozenset(
    {
        "learning_rate",
        "batch_size",
        "optimizer",
        "epochs",
        "patience",
        "shift",
        "erasing",
        "label_smoothing",
        "ema_momentum",
    }
)


def validate_space(spec: MemberSpec, space: dict[str, tuple]) -> None:
    """Raise ValueError naming the member, key and bad value of a malformed search space
    (an ``arch.NAME`` its builder does not take included: every value is applied)."""
    fields = TUNABLE_FIELDS
    for key, entry in space.items():
        where = f"search space of {spec.name!r}, {key!r}"
        if split_arch_key(key) is None and key not in fields:
            raise ValueError(
                f"{where}: unknown field; expected one of {', '.join(sorted(fields))}"
                f" or arch.<parameter>"
            )
        if not isinstance(entry, (tuple, list)) or not entry or entry[0] not in SEARCH_KINDS:
            raise ValueError(
                f"{where}: {entry!r} must be (kind, ...) with kind one of {', '.join(SEARCH_KINDS)}"
            )
        kind, args = entry[0], list(entry[1:])
        if kind == "choice":
            if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not args[0]:
                raise ValueError(f"{where}: choice needs one non-empty list, got {args!r}")
            values = list(args[0])
        else:
            if len(args) != 2 or not all(_is_number(a) for a in args) or not args[0] < args[1]:
                raise ValueError(f"{where}: {kind} needs two numbers low < high, got {args!r}")
            if kind == "loguniform" and args[0] <= 0:
                raise ValueError(f"{where}: loguniform needs low > 0, got {args[0]!r}")
            values = [float(a) for a in args]  # what (log)uniform samples: floats
        for value in values:  # every value must make a valid spec (types included)
            try:
                apply_config(spec, {key: value if kind != "randint" else int(value)})
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None


def apply_config(spec: MemberSpec, config: dict[str, Any]) -> MemberSpec:
    """The spec with a (sampled) configuration applied; validated like any spec.

    ``config``: key -> value, a key ``arch.NAME`` setting the builder's keyword NAME
    (:func:`split_arch_key`), any other a MemberSpec field. Raises ValueError when a key
    names neither, or the result is not a valid spec.
    """
    arch, fields = {}, {}
    for key, value in config.items():
        param = split_arch_key(key)
        if param is None:
            fields[key] = value
        else:
            arch[param] = value
    if arch:
        fields["arch_params"] = {**spec.arch_params, **arch}
    return spec.with_overrides(**fields)


def select_members(preset: str, names: list[str] | None = None, **overrides) -> list[MemberSpec]:
    """Pick a preset's members (all, or those named), applying overrides such as ``epochs``.

    Overrides whose value is None are ignored.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    specs = {spec.name: spec for spec in PRESETS[preset]}
    if names:
        unknown = [n for n in names if n not in specs]
        if unknown:
            raise ValueError(
                f"member {unknown[0]!r} is not in preset {preset!r}; expected "
                f"one of {', '.join(specs)}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"members {','.join(names)} name a member twice")
        chosen = [specs[n] for n in names]
    else:
        chosen = list(specs.values())
    changes = {k: v for k, v in overrides.items() if v is not None}
    return [spec.with_overrides(**changes) if changes else spec for spec in chosen]
