"""Train one committee member with Keras — no Ray here.

:func:`train_member` runs the seed's recipe (categorical cross-entropy; accuracy, precision,
recall; EarlyStopping on val_loss; the seed's learning-rate schedule) and can resume from a
:class:`TrainState` — epoch, metric history and early-stopping counters — plus a saved
``.keras`` model (which carries the optimizer state). The Ray layer passes ``on_epoch_end`` to
report metrics and checkpoints; the plain-Keras benchmark passes nothing.

A checkpoint is a folder with ``model.keras`` and ``state.json``
(:func:`save_checkpoint` / :func:`load_checkpoint`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from committee import architectures
from committee.data import NUM_CLASSES
from committee.identity import resume_seed
from committee.log import MEMBER, logger
from committee.members import MemberSpec

MODEL_FILE, STATE_FILE = "model.keras", "state.json"
METRICS = ("loss", "accuracy", "precision", "recall")


@dataclass
class TrainState:
    """Everything besides the model needed to continue training exactly where it stopped."""

    epoch: int = 0  # epochs completed so far (the next epoch's index)
    history: dict[str, list[float]] = field(default_factory=dict)
    es_wait: int = 0
    es_best: float | None = None
    stopped_early: bool = False
    resumed_at: list[int] = field(default_factory=list)  # epoch counts at each resumption
    started_at: float | None = None  # wall clock of the first epoch's start
    finished_at: float | None = None
    epochs_planned: int | None = None  # set after each epoch when a time budget applies
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's duration, validation in
    diverged: dict[str, float] | None = None  # epoch, learning_rate, loss of a non-finite epoch
    precision: str | None = None  # the dtype policy actually trained with (effective_precision)
    device: dict[str, Any] | None = None  # cpu model and GPU names where it last trained

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainState":
        """The state saved as ``data`` (a checkpoint's state.json, untrusted): every field is
        checked against its type, so a damaged file raises ValueError naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"state is {type(data).__name__}; expected a JSON object")
        unknown = sorted(set(data) - set(_STATE_CHECKS))
        if unknown:
            raise ValueError(f"state field {unknown[0]!r} is unknown")
        for key, value in data.items():
            if not _STATE_CHECKS[key](value):
                raise ValueError(f"state field {key!r} has {value!r:.80}; expected "
                                 f"{_STATE_CHECKS[key].__doc__}")
        return cls(**data)

    def total_epochs(self, spec: MemberSpec) -> int:
        """The epochs this run trains in all: the budget's plan, else the spec's ceiling."""
        return self.epochs_planned or spec.epochs


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _count(v) -> bool:
    """an integer >= 0"""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _count_or_none(v) -> bool:
    """an integer >= 0 or null"""
    return v is None or _count(v)


def _time_or_none(v) -> bool:
    """a number (seconds) or null"""
    return v is None or (_number(v) and math.isfinite(v))


def _flag(v) -> bool:
    """true or false"""
    return isinstance(v, bool)


def _counts(v) -> bool:
    """a list of integers >= 0"""
    return isinstance(v, list) and all(_count(x) for x in v)


def _durations(v) -> bool:
    """a list of numbers (seconds)"""
    return isinstance(v, list) and all(_number(x) and math.isfinite(x) for x in v)


def _history(v) -> bool:
    """an object of metric name -> list of numbers"""
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, list)
                                       and all(_number(y) for y in x) for k, x in v.items())


def _object_or_none(v) -> bool:
    """an object or null"""
    return v is None or isinstance(v, dict)


def _text_or_none(v) -> bool:
    """a string or null"""
    return v is None or isinstance(v, str)


def _best(v) -> bool:
    """a number or null"""
    return v is None or _number(v)


_STATE_CHECKS = {"epoch": _count, "history": _history, "es_wait": _count, "es_best": _best,
                 "stopped_early": _flag, "resumed_at": _counts, "started_at": _time_or_none,
                 "finished_at": _time_or_none, "epochs_planned": _count_or_none,
                 "epoch_seconds": _durations, "diverged": _object_or_none,
                 "precision": _text_or_none, "device": _object_or_none}


def plan_epochs(seconds_so_far: float, epochs_done: int, budget_s: float, max_epochs: int,
                reserve_s: float = 0.0, pace_s: float | None = None) -> int:
    """How many epochs in all fit ``budget_s`` seconds, less ``reserve_s`` kept for the
    prediction after training, when ``epochs_done`` epochs took ``seconds_so_far`` and each
    further one takes ``pace_s`` (default: the mean of those done so far).

    Never fewer than the epochs already done (nor than one), never more than ``max_epochs``.
    The pace is measured while the members share the machine (:func:`recent_pace`).
    """
    if epochs_done < 1 or not seconds_so_far > 0:
        raise ValueError(f"pace needs >= 1 epoch done in > 0 s, got {epochs_done} epochs in "
                         f"{seconds_so_far!r} s")
    if pace_s is None:
        pace_s = seconds_so_far / epochs_done
    if not pace_s > 0:
        raise ValueError(f"pace {pace_s!r} s per epoch must be > 0")
    fit = epochs_done + int((budget_s - reserve_s - seconds_so_far) // pace_s)
    return max(1, epochs_done, min(max_epochs, fit))


def recent_pace(epoch_seconds: list[float], last: int = 3) -> float:
    """Seconds per epoch from the last ``last`` epochs, leaving out the first epoch (graph
    tracing) once there are others. Shape: ``epoch_seconds`` one duration per epoch run."""
    if not epoch_seconds:
        raise ValueError("recent_pace needs at least one epoch's duration, got none")
    timed = epoch_seconds[1:] or epoch_seconds
    return sum(timed[-last:]) / len(timed[-last:])


def configure_tensorflow(threads: int | None = None, gpu_memory_growth: bool = True) -> None:
    """Limit TensorFlow to ``threads`` CPU threads and let GPUs grow memory on demand.

    Must run before TensorFlow executes its first op; afterwards the settings are fixed and
    this is a no-op.
    """
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when predicting new shapes
    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(threads))))
        if gpu_memory_growth:
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # runtime already initialised in this process
        pass


def _cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, so assume not
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _has_gpu() -> bool:
    """Whether Keras' backend (TensorFlow, JAX or PyTorch) sees a GPU."""
    return bool(gpu_names())


def cpu_model() -> str:
    """This machine's CPU model ("model name" of /proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_names() -> list[str]:
    """The names of the GPUs Keras' backend sees (e.g. "NVIDIA H200"); [] without any."""
    import keras
    backend = keras.config.backend()
    if backend == "jax":
        import jax
        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf
    return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]


def device_info() -> dict[str, Any]:
    """``{"cpu": model, "gpus": [names]}`` of the machine this process trains on."""
    return {"cpu": cpu_model(), "gpus": gpu_names()}


def effective_precision(requested: str) -> str:
    """The dtype policy to train with: ``requested`` unless this machine would emulate it.

    Mixed precision pays only with hardware support: any GPU for ``mixed_bfloat16`` (Ampere
    or newer runs it natively) and ``mixed_float16``; on CPUs, ``mixed_bfloat16`` needs
    AVX-512-BF16 or AMX. Without it, float32 is used and a line says so.
    """
    if requested == "float32":
        return requested
    if _has_gpu():
        return requested
    if requested == "mixed_bfloat16" and _cpu_has_bfloat16():
        return requested
    logger.info(f"precision {requested} has no hardware support here; training in float32",
                extra=MEMBER)
    return "float32"


def make_optimizer(name: str, learning_rate: float, ema_momentum: float = 0.0):
    """Keras' optimizer ``name`` (one of members.OPTIMIZERS) at ``learning_rate``; with
    ``ema_momentum`` > 0 it also keeps the weights' exponential moving average (its
    variables are saved with the model, so a resumed member continues the same average)."""
    import keras
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "adagrad": keras.optimizers.Adagrad, "rmsprop": keras.optimizers.RMSprop,
               "adamw": keras.optimizers.AdamW,
               "nesterov": functools.partial(keras.optimizers.SGD, momentum=0.9, nesterov=True,
                                             weight_decay=5e-3)}
    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum > 0 else {}
    return classes[name](learning_rate=learning_rate, **ema)


def compile_member(spec: MemberSpec, steps_per_execution: int = 1, jit_compile="auto",
                   precision: str | None = None):
    """Build and compile the member's model as the seed did, in ``precision`` (default: the
    spec's where this machine supports it, :func:`effective_precision`). ``jit_compile``:
    Keras' XLA switch; "auto" leaves it off on CPU-only TensorFlow."""
    import keras
    model = spec.build(precision or effective_precision(spec.precision))
    model.compile(
        optimizer=make_optimizer(spec.optimizer, spec.learning_rate, spec.ema_momentum),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing),
        metrics=["accuracy", keras.metrics.Precision(name="precision"),
                 keras.metrics.Recall(name="recall")],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def save_checkpoint(folder: str | os.PathLike, model, state: TrainState) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    (folder / STATE_FILE).write_text(json.dumps(asdict(state)))
    return folder


KERAS_ARCHIVE_PARTS = ("config.json", "model.weights.h5")  # what Keras 3's .keras zip holds


def check_keras_archive(path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` is a whole Keras 3 ``.keras`` archive: a zip whose
    CRCs check out and which holds the model's config and weights (cheap; loading it, in
    safe mode, is the full check)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [n for n in KERAS_ARCHIVE_PARTS if n not in archive.namelist()]
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path} is not a .keras (zip) file ({type(exc).__name__})") from None
    if missing or bad:
        raise ValueError(f"{path} is not a whole .keras file ("
                         + (f"no {missing[0]}" if missing else f"{bad} is damaged") + ")")


def load_checkpoint(folder: str | os.PathLike):
    """Return ``(model, state)``; the model is loaded in Keras' safe mode, with its optimizer."""
    import keras
    folder = Path(folder)
    model = keras.models.load_model(folder / MODEL_FILE, safe_mode=True)
    state = TrainState.from_dict(json.loads((folder / STATE_FILE).read_text()))
    return model, state


def augmented_batches(spec: MemberSpec, x: np.ndarray, y_onehot: np.ndarray, *, seed: int,
                      epoch: int):
    """The member's training batches from ``epoch`` on, augmented as its spec says
    (batches.AugmentedBatches; shapes there)."""
    from committee.batches import AugmentedBatches
    return AugmentedBatches(x, y_onehot, spec.batch_size, spec.augmentation, seed=seed,
                            epoch=epoch)


def _callbacks(spec: MemberSpec, state: TrainState, on_epoch_end,
               time_budget_s: float | None = None, predict_images: int = 0, n_val: int = 0):
    """The callbacks of one fit, in order: TerminateOnNaN (ends a diverged epoch at its first
    non-finite batch), the learning-rate schedule over ``state.total_epochs``, TimeBudget when
    ``time_budget_s`` is given, early stopping resumed from ``state``, and the Recorder, last,
    which records the epoch (or the divergence) and calls ``on_epoch_end``."""
    import keras

    from committee.callbacks import Recorder, ResumableEarlyStopping, TimeBudget

    early_stopping = ResumableEarlyStopping(state, monitor="val_loss", patience=spec.patience,
                                            min_delta=0, restore_best_weights=False)
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: spec.learning_rate_at(epoch, state.total_epochs(spec)))
    budget = ([TimeBudget(spec, state, time_budget_s, predict_images, n_val)]
              if time_budget_s is not None else [])
    # Validation sees the moving average of the weights, as the predictions will; the
    # checkpoints keep the raw weights (the average is in the optimizer's state).
    ema = [keras.callbacks.SwapEMAWeights()] if spec.ema_momentum > 0 else []
    return [keras.callbacks.TerminateOnNaN(), *ema, schedule, *budget, early_stopping,
            Recorder(spec, state, early_stopping, on_epoch_end)]


def train_member(
    spec: MemberSpec,
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    *,
    seed: int = 0,
    resume: tuple[Any, TrainState] | None = None,
    on_epoch_end: Callable[[int, dict, Any, TrainState], None] | None = None,
    steps_per_execution: int = 1,
    time_budget_s: float | None = None,
    predict_images: int = 0,
    verbose: int = 2,
    callbacks: list | None = None,
):
    """Train ``spec`` on (x_train, y_train), validating on (x_val, y_val).

    Shapes: ``x_*`` float32 ``(n, 28, 28, 1)``; ``y_*`` int class indices ``(n,)``.
    ``resume``: a ``(model, state)`` pair from :func:`load_checkpoint` to continue from.
    ``on_epoch_end(epoch, logs, model, state)`` is called after every epoch; ``callbacks``
    (e.g. Keras' TensorBoard) run after the project's own, so they see ``epochs_planned``.
    ``time_budget_s``: train, and then predict ``predict_images`` images (TTA views counted),
    within about this long — after every epoch the member plans how many of its
    ``spec.epochs`` fit (:func:`plan_epochs` at :func:`recent_pace`; the prediction is timed
    by the validation passes), and its learning-rate schedule runs its course over the latest
    plan (``state.epochs_planned``; kept on resumption, and re-planned from there).
    Returns ``(model, state)``; ``state.history`` holds every epoch's metrics. A member whose
    loss becomes NaN or infinite stops at once with ``state.diverged`` set (epoch, learning
    rate, loss); that epoch is neither recorded nor passed to ``on_epoch_end``.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if resume is not None:
        model, state = resume
        state.resumed_at.append(state.epoch)
        keras.utils.set_random_seed(resume_seed(seed, state.epoch))  # fresh shuffles after a resume
    else:
        precision = effective_precision(spec.precision)
        model = compile_member(spec, steps_per_execution, precision=precision)
        architectures.init_whitening(model, x_train)  # a frozen layer set from the data, if any
        state = TrainState(precision=precision)
    if state.precision is None:  # a checkpoint saved before the field existed
        state.precision = effective_precision(spec.precision)
    state.device = device_info()  # where it trains now (a resumed member may have moved)
    if state.started_at is None:
        state.started_at = time.time()
    if time_budget_s is not None and not time_budget_s > 0:
        raise ValueError(f"time budget {time_budget_s!r} s must be > 0")
    if state.epoch < state.total_epochs(spec) and not state.stopped_early:
        if spec.augmentation.active:  # batches made on the CPU, cheap on any device
            inputs = {"x": augmented_batches(spec, x_train, one_hot(y_train), seed=seed,
                                             epoch=state.epoch)}
        else:  # Keras batches and shuffles the arrays itself
            inputs = {"x": x_train, "y": one_hot(y_train), "batch_size": spec.batch_size,
                      "shuffle": True}
        model.fit(
            **inputs,
            validation_data=(x_val, one_hot(y_val)),
            validation_batch_size=spec.batch_size,
            # Under a budget the plan may grow, and TimeBudget ends training; without one, the
            # plan a resumed member brings holds.
            epochs=spec.epochs if time_budget_s is not None else state.total_epochs(spec),
            initial_epoch=state.epoch,
            callbacks=_callbacks(spec, state, on_epoch_end, time_budget_s, predict_images,
                                 len(x_val)) + list(callbacks or []),
            verbose=verbose,
        )
    state.finished_at = time.time()
    return model, state
