"""The Keras callbacks :func:`committee.training.loop.train_member` trains with.

Each is given the member's spec and its :class:`~committee.training.loop.TrainState` (which it
reads and updates) when it is made; :func:`committee.training.loop._callbacks` builds the list.
This module imports Keras, so it is imported only when a member trains.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from committee.log import MEMBER, logger, plural
from committee.members.spec import MemberSpec
from committee.training.state import TrainState, plan_epochs, recent_pace


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters survive a restart: ``state.es_wait`` and
    ``state.es_best`` are restored after on_train_begin. Other keyword arguments are
    EarlyStopping's."""

    def __init__(self, state: TrainState, **kwargs):
        super().__init__(**kwargs)
        self.state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait, self.best = self.state.es_wait, self.state.es_best


class Recorder(keras.callbacks.Callback):
    """Runs last each epoch: folds the epoch into ``state`` (history, epoch count,
    ``early_stopping``'s counters), then calls ``on_epoch_end(epoch, logs, model, state)``
    if given. An epoch whose loss is not finite is recorded as the divergence
    (``state.diverged``) and nothing else: the member stops, and no checkpoint of its
    weights is made."""

    def __init__(
        self,
        spec: MemberSpec,
        state: TrainState,
        early_stopping: keras.callbacks.EarlyStopping,
        on_epoch_end: Callable[[int, dict, Any, TrainState], None] | None = None,
    ):
        super().__init__()
        self.spec, self.state, self.early_stopping = spec, state, early_stopping
        self.report = on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        spec, state, early_stopping = self.spec, self.state, self.early_stopping
        logs = dict(logs or {})
        bad = {
            k: float(v)
            for k, v in logs.items()
            if k in ("loss", "val_loss") and not np.isfinite(float(v))
        }
        if bad:
            state.diverged = {
                "epoch": epoch + 1,
                "learning_rate": float(spec.learning_rate_at(epoch, state.total_epochs(spec))),
                "loss": bad.get("loss", bad.get("val_loss")),
            }
            self.model.stop_training = True
            return
        for key, value in logs.items():
            state.history.setdefault(key, []).append(float(value))
        state.epoch = epoch + 1
        state.finished_at = time.time()  # of the last epoch so far: saved with it
        state.es_wait = int(early_stopping.wait)
        state.es_best = None if early_stopping.best is None else float(early_stopping.best)
        state.stopped_early = bool(self.model.stop_training) and state.epoch < state.total_epochs(
            spec
        )
        if self.report is not None:
            self.report(epoch, logs, self.model, state)


class TimeBudget(keras.callbacks.Callback):
    """After every epoch, plans how many epochs in all fit ``time_budget_s`` (counted as
    time spent training: the sum of ``state.epoch_seconds``, so hours between a stop and
    its resumption are not spent budget) once the prediction of ``predict_images`` images
    is reserved (timed by the validation passes of ``n_val`` images each), at the pace of
    the last few epochs; the schedule decays over the latest plan (``state.epochs_planned``,
    also logged as ``epochs_planned``). Re-planning each epoch spends what a first-epoch plan
    would leave unused: the first epoch is slowed by graph tracing, and a member speeds up
    when another finishes and frees its share of the machine. Ends training when the
    planned epochs are done."""

    def __init__(
        self,
        spec: MemberSpec,
        state: TrainState,
        time_budget_s: float,
        predict_images: int = 0,
        n_val: int = 0,
    ):
        super().__init__()
        self.spec, self.state, self.time_budget_s = spec, state, time_budget_s
        self.predict_images, self.n_val = predict_images, n_val
        self.val_s, self.val_images, self._began, self._epoch_began = 0.0, 0, 0.0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_began = time.time()

    def on_test_begin(self, logs=None):  # fit's validation pass
        self._began = time.time()

    def on_test_end(self, logs=None):
        self.val_s += time.time() - self._began
        self.val_images += self.n_val

    def on_epoch_end(self, epoch, logs=None):
        spec, state, budget_s = self.spec, self.state, self.time_budget_s
        now = time.time()
        state.epoch_seconds.append(now - self._epoch_began)
        # Training time, not wall time since started_at: a run stopped and resumed later
        # has not spent its budget while it was down.
        took, pace = sum(state.epoch_seconds), recent_pace(state.epoch_seconds)
        reserve = self.predict_images * self.val_s / max(1, self.val_images)
        before = state.epochs_planned
        state.epochs_planned = plan_epochs(took, epoch + 1, budget_s, spec.epochs, reserve, pace)
        logs["epochs_planned"] = state.epochs_planned  # for TensorBoard and the history
        if state.epochs_planned != before:
            logger.info(
                f"[{spec.name}] time budget {budget_s / 60:.1f} min: "
                f"{plural(epoch + 1, 'epoch')} in {took:.0f} s, {pace:.0f} s each lately, "
                f"prediction needs ~{reserve:.0f} s, so {state.epochs_planned} of "
                f"{plural(spec.epochs, 'epoch')}" + ("" if before is None else f" (was {before})"),
                extra=MEMBER,
            )
        if epoch + 1 >= state.epochs_planned:
            self.model.stop_training = True
