"""Train one committee member with Keras — no Ray here.

:func:`train_member` runs the seed's recipe (categorical cross-entropy; accuracy, precision,
recall; EarlyStopping on val_loss; the seed's learning-rate schedule) and can resume from a
:class:`~committee.training.state.TrainState` — epoch, metric history and early-stopping
counters — plus a saved ``.keras`` model (which carries the optimizer state). The Ray layer
passes ``on_epoch_end`` to report metrics and checkpoints; the plain-Keras benchmark passes
nothing. Checkpoints: :mod:`committee.training.checkpoint`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from committee.data.fashion_mnist import NUM_CLASSES
from committee.members import architectures
from committee.members.seeds import resume_seed
from committee.members.spec import MemberSpec
from committee.training.device import device_info, effective_precision
from committee.training.state import TrainState


def make_optimizer(name: str, learning_rate: float, ema_momentum: float = 0.0):
    """Keras' optimizer ``name`` (one of members.OPTIMIZERS) at ``learning_rate``; with
    ``ema_momentum`` > 0 it also keeps the weights' exponential moving average (its
    variables are saved with the model, so a resumed member continues the same average)."""
    import keras

    classes = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "adagrad": keras.optimizers.Adagrad,
        "rmsprop": keras.optimizers.RMSprop,
        "adamw": keras.optimizers.AdamW,
        "nesterov": functools.partial(
            keras.optimizers.SGD, momentum=0.9, nesterov=True, weight_decay=5e-3
        ),
    }
    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum > 0 else {}
    return classes[name](learning_rate=learning_rate, **ema)


def compile_member(
    spec: MemberSpec, steps_per_execution: int = 1, jit_compile="auto", precision: str | None = None
):
    """Build and compile the member's model as the seed did, in ``precision`` (default: the
    spec's where this machine supports it, :func:`effective_precision`). ``jit_compile``:
    Keras' XLA switch; "auto" leaves it off on CPU-only TensorFlow."""
    import keras

    model = spec.build(precision or effective_precision(spec.precision))
    model.compile(
        optimizer=make_optimizer(spec.optimizer, spec.learning_rate, spec.ema_momentum),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing),
        metrics=[
            "accuracy",
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def augmented_batches(
    spec: MemberSpec, x: np.ndarray, y_onehot: np.ndarray, *, seed: int, epoch: int
):
    """The member's training batches from ``epoch`` on, augmented as its spec says
    (batches.AugmentedBatches; shapes there)."""
    from committee.training.batches import AugmentedBatches

    return AugmentedBatches(x, y_onehot, spec.batch_size, spec.augmentation, seed=seed, epoch=epoch)


def _callbacks(
    spec: MemberSpec,
    state: TrainState,
    on_epoch_end,
    time_budget_s: float | None = None,
    predict_images: int = 0,
    n_val: int = 0,
):
    """The callbacks of one fit, in order: TerminateOnNaN (ends a diverged epoch at its first
    non-finite batch), the learning-rate schedule over ``state.total_epochs``, TimeBudget when
    ``time_budget_s`` is given, early stopping resumed from ``state``, and the Recorder, last,
    which records the epoch (or the divergence) and calls ``on_epoch_end``."""
    import keras

    from committee.training.callbacks import (
        Recorder,
        ResumableEarlyStopping,
        TimeBudget,
    )

    early_stopping = ResumableEarlyStopping(
        state, monitor="val_loss", patience=spec.patience, min_delta=0, restore_best_weights=False
    )
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: spec.learning_rate_at(epoch, state.total_epochs(spec))
    )
    budget = (
        [TimeBudget(spec, state, time_budget_s, predict_images, n_val)]
        if time_budget_s is not None
        else []
    )
    # Validation sees the moving average of the weights, as the predictions will; the
    # checkpoints keep the raw weights (the average is in the optimizer's state).
    ema = [keras.callbacks.SwapEMAWeights()] if spec.ema_momentum > 0 else []
    return [
        keras.callbacks.TerminateOnNaN(),
        *ema,
        schedule,
        *budget,
        early_stopping,
        Recorder(spec, state, early_stopping, on_epoch_end),
    ]


def train_member(
    spec: MemberSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    seed: int = 0,
    resume: tuple[Any, TrainState] | None = None,
    on_epoch_end: Callable[[int, dict, Any, TrainState], None] | None = None,
    steps_per_execution: int = 1,
    time_budget_s: float | None = None,
    predict_images: int = 0,
    verbose: int = 2,
    callbacks: list | None = None,
    on_phase: Callable[[str], None] | None = None,
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
    ``on_phase(text)`` is told each step before the first epoch ends ("building and compiling
    the model", "epoch 1: compiling the training step" ...), for a live display.
    """
    import keras

    phase = on_phase or (lambda text: None)

    keras.utils.set_random_seed(seed)
    if resume is not None:
        model, state = resume
        state.resumed_at.append(state.epoch)
        keras.utils.set_random_seed(resume_seed(seed, state.epoch))  # fresh shuffles after a resume
    else:
        precision = effective_precision(spec.precision)
        phase(f"building and compiling the model ({precision})")
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
            inputs = {
                "x": augmented_batches(
                    spec, x_train, one_hot(y_train), seed=seed, epoch=state.epoch
                )
            }
        else:  # Keras batches and shuffles the arrays itself
            inputs = {
                "x": x_train,
                "y": one_hot(y_train),
                "batch_size": spec.batch_size,
                "shuffle": True,
            }
        phase(f"epoch {state.epoch + 1} running (its first steps compile the model)")
        model.fit(
            **inputs,
            validation_data=(x_val, one_hot(y_val)),
            validation_batch_size=spec.batch_size,
            # Under a budget the plan may grow, and TimeBudget ends training; without one, the
            # plan a resumed member brings holds.
            epochs=spec.epochs if time_budget_s is not None else state.total_epochs(spec),
            initial_epoch=state.epoch,
            callbacks=_callbacks(
                spec, state, on_epoch_end, time_budget_s, predict_images, len(x_val)
            )
            + list(callbacks or []),
            verbose=verbose,
        )
    state.finished_at = time.time()
    return model, state
