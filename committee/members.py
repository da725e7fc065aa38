"""Committee members described as data: architecture builders, member specs and presets.

A member is a :class:`MemberSpec` — a name, the builder of its architecture (with keyword
arguments), an optimizer, a learning rate, a batch size, an epoch ceiling and its callbacks'
settings. A preset is a tuple of specs. The trainer only ever reads specs, so a preset can be
added here without touching training or orchestration code.

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

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
OPTIMIZERS = ("adam", "sgd", "adagrad", "rmsprop", "adamw")
TTA_MODES = {"none": 1, "mirror": 2, "mirror+shifts": 10}  # mode -> views averaged (prediction.py)


# --------------------------------------------------------------------------- architectures
# Keras is imported inside the builders so that importing this module stays cheap.

def build_model1(dense_units: int = 256, filters: int = 32):
    """Seed Model-1: Conv(32, 3, s2) -> MaxPool(2) -> Flatten -> Dense(256) -> Dense(10)."""
    import keras
    from keras import layers
    return keras.Sequential([
        keras.Input(INPUT_SHAPE),
        layers.Conv2D(filters, 3, strides=2, padding="valid", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(dense_units, activation="relu"),
        _classifier(layers),
    ], name="model1")


def build_model2(dropout: float = 0.2, dense_units: int = 128):
    """Seed Model-2: two (Conv k2 s2 -> MaxPool -> Dropout) blocks (64, 32), Dense(128), Dense(10)."""
    import keras
    from keras import layers
    return keras.Sequential([
        keras.Input(INPUT_SHAPE),
        layers.Conv2D(64, 2, strides=2, padding="valid", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Dropout(dropout),
        layers.Conv2D(32, 2, strides=2, padding="valid", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Dropout(dropout),
        layers.Flatten(),
        layers.Dense(dense_units, activation="relu"),
        layers.Dropout(dropout),
        _classifier(layers),
    ], name="model2")


def build_model3(dropout: float = 0.3, dense_units: int = 128):
    """Seed Model-3: Conv(k3 s2 same) blocks of 128, 64, 32 filters (pool after the first two),
    each with BatchNorm and Dropout, then Dense(128) -> Dropout -> Dense(10)."""
    import keras
    from keras import layers
    stack = [keras.Input(INPUT_SHAPE)]
    for i, filters in enumerate((128, 64, 32)):
        stack.append(layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu"))
        if i < 2:
            stack.append(layers.MaxPooling2D(2))
        stack += [layers.BatchNormalization(), layers.Dropout(dropout)]
    stack += [layers.Flatten(), layers.Dense(dense_units, activation="relu"),
              layers.Dropout(dropout), _classifier(layers)]
    return keras.Sequential(stack, name="model3")


def _classifier(layers):
    """The softmax output, always in float32: probabilities stay exact under mixed precision."""
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")


def _augment(layers, erasing: float, shift: float):
    """Fashion-MNIST-safe augmentation, active in training only: small shifts (up to ``shift``
    of the image's size), horizontal flips (garments are left-right symmetric; never
    vertical), random erasing."""
    stack = [layers.RandomTranslation(shift, shift, fill_mode="constant")] if shift > 0 else []
    stack.append(layers.RandomFlip("horizontal"))
    if erasing > 0:
        stack.append(layers.RandomErasing(factor=erasing, scale=(0.02, 0.2),
                                          value_range=(0.0, 1.0)))
    return stack


def build_vgg(width: int = 16, dropout: float = 0.2, erasing: float = 0.1, shift: float = 0.05):
    """VGG-style: two blocks (``width``, then 2x filters) of (Conv3-BN-ReLU) x2 + MaxPool, then
    Dense(256)."""
    import keras
    from keras import layers
    stack = [keras.Input(INPUT_SHAPE), *_augment(layers, erasing, shift)]
    for filters in (width, 2 * width):
        for _ in range(2):
            stack += [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                      layers.BatchNormalization(), layers.Activation("relu")]
        stack += [layers.MaxPooling2D(2), layers.Dropout(dropout / 2)]
    stack += [layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dropout(dropout),
              _classifier(layers)]
    return keras.Sequential(stack, name="vgg")


def build_resnet(width: int = 24, stem: int = 16, erasing: float = 0.1, shift: float = 0.05):
    """A small pre-activation ResNet: a Conv3(``stem``) stem at 28x28, then three stages
    (``width``, 2x, 4x) of one residual block each, every stage halving the resolution
    (14, 7, 4), global average pooling. Nothing but the stem works at 28x28: on a 2-core CPU a
    stage at that size sets the time per step (see the preset's comment for the figures)."""
    import keras
    from keras import layers
    inputs = keras.Input(INPUT_SHAPE)
    x = inputs
    for layer in _augment(layers, erasing, shift):
        x = layer(x)
    x = layers.Conv2D(stem, 3, padding="same", use_bias=False)(x)
    for filters in (width, 2 * width, 4 * width):
        y = layers.Activation("relu")(layers.BatchNormalization()(x))
        shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False)(y)
        y = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(y)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        x = layers.Add()([shortcut, y])
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = _classifier(layers)(x)
    return keras.Model(inputs, outputs, name="resnet")


def build_wide(filters: int = 32, top: int = 128, dropout: float = 0.1, erasing: float = 0.1,
               shift: float = 0.05):
    """Wide and shallow: Conv5(filters) -> pool -> Conv3(filters) -> pool -> Conv3(top) at 7x7,
    each with BN, then Flatten -> Dense(256). Its one 7x7 layer costs little: the 28x28 layer
    sets the time per step (on a 2-core AVX2 CPU, 32 filters train 2x faster than 48 or 64)."""
    import keras
    from keras import layers
    stack = [keras.Input(INPUT_SHAPE), *_augment(layers, erasing, shift)]
    for size, width, pool in ((5, filters, True), (3, filters, True), (3, top, False)):
        stack += [layers.Conv2D(width, size, padding="same", use_bias=False),
                  layers.BatchNormalization(), layers.Activation("relu")]
        if pool:
            stack.append(layers.MaxPooling2D(2))
    stack += [layers.Dropout(dropout / 2), layers.Flatten(),
              layers.Dense(256, activation="relu"), layers.Dropout(dropout),
              _classifier(layers)]
    return keras.Sequential(stack, name="wide")


ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "model1": build_model1,
    "model2": build_model2,
    "model3": build_model3,
    "vgg": build_vgg,
    "resnet": build_resnet,
    "wide": build_wide,
}


# --------------------------------------------------------------------------- learning rate

SCHEDULES = ("seed", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def cosine_schedule(epoch: int, initial_lr: float, epochs: int, warmup: int = 1) -> float:
    """Linear warm-up for ``warmup`` epochs, then cosine decay to ~0 at the last epoch."""
    if epoch < warmup:
        return initial_lr * (epoch + 1) / (warmup + 1)
    progress = (epoch - warmup) / max(1, epochs - warmup)
    return initial_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def seed_schedule(epoch: int, initial_lr: float, hold_epochs: int = 10,
                  decay: float = 0.1) -> float:
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

    def __post_init__(self):
        validate_spec(self)

    def with_overrides(self, **changes) -> "MemberSpec":
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_spec(spec: MemberSpec) -> None:
    """Raise ValueError naming the member, the bad value and what was expected."""
    where = f"member {spec.name!r}"
    if spec.architecture not in ARCHITECTURES:
        raise ValueError(f"{where}: architecture {spec.architecture!r} is unknown; expected one "
                         f"of {', '.join(ARCHITECTURES)}")
    if spec.optimizer not in OPTIMIZERS:
        raise ValueError(f"{where}: optimizer {spec.optimizer!r} is unknown; expected one of "
                         f"{', '.join(OPTIMIZERS)}")
    if not _is_number(spec.learning_rate) or spec.learning_rate <= 0:
        raise ValueError(f"{where}: learning rate {spec.learning_rate!r} must be a number > 0")
    for label, value in (("batch size", spec.batch_size), ("epochs", spec.epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{where}: {label} {value!r} must be an integer > 0")
    if spec.schedule not in SCHEDULES:
        raise ValueError(f"{where}: schedule {spec.schedule!r} is unknown; expected one of "
                         f"{', '.join(SCHEDULES)}")
    if not isinstance(spec.patience, int) or spec.patience < 0:
        raise ValueError(f"{where}: patience {spec.patience!r} must be an integer >= 0")
    if spec.precision not in PRECISIONS:
        raise ValueError(f"{where}: precision {spec.precision!r} is unknown; expected one of "
                         f"{', '.join(PRECISIONS)}")
    if spec.tta not in TTA_MODES:
        raise ValueError(f"{where}: tta {spec.tta!r} is unknown; expected one of "
                         f"{', '.join(TTA_MODES)}")


SEED_PRESET: tuple[MemberSpec, ...] = (
    MemberSpec("model1", "model1", "adam", 0.001, 32, expected_params=298_058),
    MemberSpec("model2", "model2", "sgd", 0.01, 16, expected_params=14_058),
    MemberSpec("model3", "model3", "adagrad", 0.001, 64, expected_params=99_946),
)

# Three deliberately different families, with augmentation (in the models), AdamW and a
# cosine schedule; early stopping is effectively off (patience = epochs) so the schedule
# runs to its end. Predictions average ten views of each image: itself and its mirror, each
# also shifted one pixel up/down/left/right (tta; chosen on the validation split: +0.002 val
# accuracy per member over the mirror alone, measured on the 15/12/16-epoch run). Mixed
# bfloat16 (float32 where the hardware lacks it: training.effective_precision) is for GPUs;
# on a 2-core AMX CPU it gave 15-30% per step to one process.
# Sizes are set on the slower of the 2-core CPUs seen here (AMD EPYC, AVX2 only, so float32),
# where two TensorFlow processes together train only ~1.2x as fast as one. At twice these
# widths (871k / 309k / 1.72M parameters) a 43-minute budget there bought 7 / 3 / 7 epochs
# and a 0.915 committee; at these, 18 / 12 / 17 epochs gave test 0.924 / 0.918 / 0.922,
# committee 0.928, in 43.8 minutes. Batch 64: the cost per image is no higher than at 128 on
# that CPU, and twice the updates per epoch gave resnet +0.012 validation accuracy after a
# 4-epoch schedule (0.891 vs 0.879; batch 32: 0.888); the full run with the default budget
# then planned 17 / 12 / 17 epochs and gave 0.927 / 0.924 / 0.923, committee 0.930, in 39.3
# minutes. Regularisation is light (erasing p=0.1, dropout 0.2, wide's 0.1): at 15 epochs
# the heavier recipe (p=0.25, dropout 0.3) under-fitted. So did shifts of up to 10% (2.8 pixels):
# the members' training accuracy under augmentation ended within 0.004 of their validation
# accuracy. Up to 5% (the builders' default) gave, after the 4-epoch schedule, resnet 0.903
# (10%: 0.891; no shift: 0.896) and wide 0.910 (0.896); the full run then gave 0.9308 /
# 0.9294 / 0.9297, committee 0.9347, with 15 / 12 / 15 epochs in 40.6 minutes. Resnet then
# did a whole stage at 28x28 and was the slowest (128 ms/step against 70 now) and weakest:
# with its stages at 14/7/4 (build_resnet) a probe of the same ~8 minutes gave 0.924 val
# accuracy (7 epochs) against 0.903 (4), and the full run planned 17 / 20 / 16 epochs and gave
# 0.9336 / 0.9375 / 0.9308, committee 0.9382, in 40.8 minutes. Wide, then the weakest, takes
# dropout 0.1 (build_wide): 4-epoch probe 0.914 against 0.910; in full runs its validation
# accuracy moved +0.0025 (--seed 1) and +0.0002 (--seed 2), its test accuracy +0.0020 and
# -0.0012 (0.9325, 0.9292): within the noise between runs, kept for the validation gain.
# The epochs are ceilings: a run of this preset has a time budget by default
# (PRESET_MEMBER_MINUTES), which re-plans each member's epochs after every epoch from its
# recent pace, so the three finish together and within 45 minutes on any of these machines; a
# faster one trains more. Planned once, after the first epoch, the budget left 2-5 minutes
# unused (runs of 38-42 min); re-planned, 19 / 24 / 18 epochs (--seed 2, 43.6 min),
# 19 / 19 / 18 (--seed 1, 42.7) and 20 / 21 / 18 (seed 0, 43.6) gave 0.9385 / 0.9370 / 0.9319,
# 0.9359 / 0.9368 / 0.9330 and 0.9349 / 0.9394 / 0.9329, committee 0.9417, 0.9421, 0.9408.
_STRONG = dict(optimizer="adamw", batch_size=64, epochs=30, patience=30, schedule="cosine",
               precision="mixed_bfloat16", tta="mirror+shifts")
STRONG_PRESET: tuple[MemberSpec, ...] = (
    MemberSpec("vgg", "vgg", learning_rate=0.002, expected_params=420_890, **_STRONG),
    MemberSpec("resnet", "resnet", learning_rate=0.002, expected_params=172_826, **_STRONG),
    MemberSpec("wide", "wide", learning_rate=0.001, expected_params=1_656_106, **_STRONG),
)

PRESETS: dict[str, tuple[MemberSpec, ...]] = {"seed": SEED_PRESET, "strong": STRONG_PRESET}

# Each member's time budget in minutes (training and prediction) for a run of the preset
# that names no --member-minutes and no --epochs. The job adds about a minute (start-up,
# scoring), so a strong run takes ~43 minutes on a 2-core CPU, whatever its speed (measured:
# 42.7, 43.6 and 43.6).
PRESET_MEMBER_MINUTES: dict[str, float] = {"strong": 42.0}


# --------------------------------------------------------------------------- search spaces
# Declared next to the specs, as data: field -> (kind, *arguments). Kinds: "loguniform" and
# "uniform" (low, high), "choice" (list of values), "randint" (low, high exclusive). A key
# "arch.NAME" sets the builder's keyword NAME; other keys set MemberSpec fields.

SEARCH_KINDS = ("loguniform", "uniform", "choice", "randint")

SEARCH_SPACES: dict[str, dict[str, tuple]] = {
    "model1": {"learning_rate": ("loguniform", 1e-4, 1e-2),
               "batch_size": ("choice", [32, 64, 128]),
               "optimizer": ("choice", ["adam", "rmsprop", "adamw"]),
               "arch.filters": ("choice", [32, 64]),
               "arch.dense_units": ("choice", [128, 256, 512]),
               "epochs": ("choice", [10, 20])},
    "model2": {"learning_rate": ("loguniform", 1e-3, 1e-1),
               "batch_size": ("choice", [16, 32, 64]),
               "optimizer": ("choice", ["sgd", "adam"]),
               "arch.dropout": ("uniform", 0.0, 0.5),
               "arch.dense_units": ("choice", [64, 128, 256]),
               "epochs": ("choice", [10, 20])},
    "model3": {"learning_rate": ("loguniform", 1e-4, 1e-1),
               "batch_size": ("choice", [32, 64, 128]),
               "optimizer": ("choice", ["adagrad", "adam"]),
               "arch.dropout": ("uniform", 0.1, 0.5),
               "arch.dense_units": ("choice", [64, 128, 256]),
               "epochs": ("choice", [10, 20])},
}


def validate_space(spec: MemberSpec, space: dict[str, tuple]) -> None:
    """Raise ValueError naming the member, key and bad value of a malformed search space."""
    import inspect

    arch_params = inspect.signature(ARCHITECTURES[spec.architecture]).parameters
    fields = {"learning_rate", "batch_size", "optimizer", "epochs", "patience"}
    for key, entry in space.items():
        where = f"search space of {spec.name!r}, {key!r}"
        if key.startswith("arch."):
            if key[5:] not in arch_params:
                raise ValueError(f"{where}: {spec.architecture} has no parameter {key[5:]!r}; "
                                 f"expected one of {', '.join(arch_params)}")
        elif key not in fields:
            raise ValueError(f"{where}: unknown field; expected one of {', '.join(sorted(fields))}"
                             f" or arch.<parameter>")
        if not isinstance(entry, (tuple, list)) or not entry or entry[0] not in SEARCH_KINDS:
            raise ValueError(f"{where}: {entry!r} must be (kind, ...) with kind one of "
                             f"{', '.join(SEARCH_KINDS)}")
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
            values = args
        for value in values:  # every value must make a valid spec (types included)
            try:
                apply_config(spec, {key: value if kind != "randint" else int(value)})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: {exc}") from None


def apply_config(spec: MemberSpec, config: dict[str, Any]) -> MemberSpec:
    """The spec with a (sampled) configuration applied; validated like any spec."""
    arch = {k[5:]: v for k, v in config.items() if k.startswith("arch.")}
    fields = {k: v for k, v in config.items() if not k.startswith("arch.")}
    if arch:
        fields["arch_params"] = {**spec.arch_params, **arch}
    return spec.with_overrides(**fields)


def select_members(preset: str, names: list[str] | None = None,
                   **overrides) -> list[MemberSpec]:
    """Pick a preset's members (all, or those named), applying overrides such as ``epochs``.

    Overrides whose value is None are ignored.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    specs = {spec.name: spec for spec in PRESETS[preset]}
    if names:
        unknown = [n for n in names if n not in specs]
        if unknown:
            raise ValueError(f"member {unknown[0]!r} is not in preset {preset!r}; expected "
                             f"one of {', '.join(specs)}")
        if len(set(names)) != len(names):
            raise ValueError(f"members {','.join(names)} name a member twice")
        chosen = [specs[n] for n in names]
    else:
        chosen = list(specs.values())
    changes = {k: v for k, v in overrides.items() if v is not None}
    return [spec.with_overrides(**changes) if changes else spec for spec in chosen]
