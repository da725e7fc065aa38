"""Training one member with plain Keras (no Ray): metrics, checkpoints, exact resumption."""

from __future__ import annotations

import time

import numpy as np
import pytest

from committee.data import fashion_mnist as data
from committee.members import spec as members
from committee.members.tta import tta_views
from committee.training import checkpoint, device, loop
from committee.training.checkpoint import load_checkpoint, save_checkpoint
from committee.training.device import effective_precision
from committee.training.loop import compile_member, train_member
from committee.training.prediction import load_model, predict_proba
from committee.training.state import TrainState


@pytest.fixture(scope="module")
def small(dataset):
    return data.split_train_val(dataset.x_train, dataset.y_train, limit=600)


def _arrays(split):
    """``(x_train, y_train, x_val, y_val)`` of a data.Split, as train_member takes them."""
    return split.x_train, split.y_train, split.x_val, split.y_val


def test_one_epoch_reports_all_metrics(small):
    spec = members.SEED_PRESET[0].with_overrides(epochs=1)
    seen, phases = [], []
    model, state = train_member(
        spec,
        *_arrays(small),
        on_epoch_end=lambda e, logs, m, s: seen.append((e, logs, s.finished_at)),
        verbose=0,
        on_phase=phases.append,
    )
    assert [e for e, _, _ in seen] == [0] and state.epoch == 1
    # what the live display shows before the first epoch ends
    assert phases == [
        f"building and compiling the model ({state.precision})",
        "epoch 1 running (its first steps compile the model)",
    ]
    assert state.started_at < seen[0][2] <= state.finished_at  # saved with the checkpoint
    for key in (
        "loss",
        "accuracy",
        "precision",
        "recall",
        "val_loss",
        "val_accuracy",
        "val_precision",
        "val_recall",
        "learning_rate",
    ):
        assert len(state.history[key]) == 1, key
    assert state.started_at <= state.finished_at
    proba = predict_proba(model, small.x_val)
    assert proba.shape == (120, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_resume_continues_the_epoch_count_and_optimizer_state(small, tmp_path):
    spec = members.SEED_PRESET[0].with_overrides(epochs=3)
    first = spec.with_overrides(epochs=1)
    model, state = train_member(first, *_arrays(small), verbose=0)
    save_checkpoint(tmp_path / "ckpt", model, state)
    restored, restored_state = load_checkpoint(tmp_path / "ckpt")
    assert int(restored.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) > 0
    epochs = []
    _, final = train_member(
        spec,
        *_arrays(small),
        resume=(restored, restored_state),
        verbose=0,
        on_epoch_end=lambda e, *_: epochs.append(e),
    )
    assert epochs == [1, 2]  # continued, not restarted
    assert final.epoch == 3 and len(final.history["loss"]) == 3
    assert final.history["loss"][0] == state.history["loss"][0]


def test_early_stopping_counters_survive_a_restart(small, tmp_path):
    spec = members.SEED_PRESET[0].with_overrides(epochs=3, patience=0)
    # patience 0: the first epoch whose val_loss does not improve stops training
    model, state = train_member(
        spec.with_overrides(epochs=1),
        *_arrays(small),
        verbose=0,
    )
    state.es_best = -1.0  # pretend an earlier epoch reached an unbeatable val_loss
    _, final = train_member(
        spec,
        *_arrays(small),
        resume=(model, state),
        verbose=0,
    )
    assert final.stopped_early and final.epoch == 2


def test_time_budget_ends_training_after_the_planned_epochs(small):
    spec = members.SEED_PRESET[0].with_overrides(epochs=4)
    model, state = train_member(spec, *_arrays(small), time_budget_s=1e-3, verbose=0)
    assert state.epochs_planned == 1 and state.epoch == 1 and not state.stopped_early
    # An hour's budget, but a prediction that the validation pass times at far longer.
    _, state = train_member(
        spec,
        *_arrays(small),
        time_budget_s=3600,
        predict_images=10**10,
        verbose=0,
    )
    assert state.epochs_planned == 1 and state.epoch == 1
    _, state = train_member(
        spec,
        *_arrays(small),
        time_budget_s=3600,
        predict_images=1000,
        verbose=0,
    )
    assert state.epochs_planned == 4 and state.epoch == 4
    with pytest.raises(ValueError, match="time budget 0 s must be > 0"):
        train_member(spec, *_arrays(small), time_budget_s=0, verbose=0)


def test_time_budget_replans_after_every_epoch(small):
    """A resumed member re-plans from its pace: its plan grows when time is left, and shrinks
    when the budget is nearly spent."""
    spec = members.SEED_PRESET[0].with_overrides(epochs=4, schedule="cosine")
    # 1 of 2 planned epochs done; an hour's budget with 10 s spent: the ceiling fits.
    state = TrainState(epoch=1, epochs_planned=2, started_at=time.time() - 10, epoch_seconds=[10.0])
    _, state = train_member(
        spec,
        *_arrays(small),
        resume=(compile_member(spec), state),
        time_budget_s=3600,
        verbose=0,
    )
    assert state.epochs_planned == 4 and state.epoch == 4 and len(state.epoch_seconds) == 4
    assert state.history["learning_rate"] == pytest.approx(
        [spec.learning_rate_at(e, 4) for e in range(1, 4)], rel=1e-6
    )
    # 2 of 4 done in 3500 s of training, 100 s of the budget left: the third is the last.
    state = TrainState(
        epoch=2, epochs_planned=4, started_at=time.time() - 3500, epoch_seconds=[1750.0, 1750.0]
    )
    _, state = train_member(
        spec,
        *_arrays(small),
        resume=(compile_member(spec), state),
        time_budget_s=3600,
        verbose=0,
    )
    assert state.epochs_planned == 3 and state.epoch == 3


def test_time_budget_counts_training_time_not_downtime(small):
    """A member stopped after 1 epoch of 10 s and resumed 5 hours later still has most of an
    hour's budget: the downtime is not spent training."""
    spec = members.SEED_PRESET[0].with_overrides(epochs=3)
    state = TrainState(
        epoch=1, epochs_planned=3, started_at=time.time() - 5 * 3600, epoch_seconds=[10.0]
    )
    _, state = train_member(
        spec,
        *_arrays(small),
        resume=(compile_member(spec), state),
        time_budget_s=3600,
        verbose=0,
    )
    assert state.epochs_planned == 3 and state.epoch == 3


def test_planned_epochs_shorten_the_cosine_schedule(small):
    """A plan of 3 of 6 epochs: the schedule decays over 3, and the plan holds on resumption."""
    spec = members.SEED_PRESET[0].with_overrides(epochs=6, schedule="cosine")
    resume = (compile_member(spec), TrainState(epochs_planned=3))
    _, state = train_member(spec, *_arrays(small), resume=resume, verbose=0)
    assert state.epoch == 3 and not state.stopped_early
    assert state.history["learning_rate"] == pytest.approx(
        [spec.learning_rate_at(e, 3) for e in range(3)], rel=1e-6
    )
    assert spec.learning_rate_at(2, 3) < 0.6 * spec.learning_rate_at(2)  # 0.51 vs 0.86 of lr


def test_saved_model_loads_in_safe_mode(small, tmp_path):
    spec = members.SEED_PRESET[1].with_overrides(epochs=1)
    model, state = train_member(spec, *_arrays(small), verbose=0)
    save_checkpoint(tmp_path, model, state)
    again = load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        predict_proba(again, small.x_val), predict_proba(model, small.x_val), atol=1e-6
    )


def test_precision_matches_this_machine():
    """Unpatched: mixed_float16 is kept exactly when the backend sees a GPU."""
    expected = "mixed_float16" if device._has_gpu() else "float32"
    assert effective_precision("mixed_float16") == expected


def test_tta_averages_exactly_its_views(small):
    spec = members.STRONG_PRESET[1].with_overrides(epochs=1)
    model, _ = train_member(spec, *_arrays(small), verbose=0)
    x = small.x_val[:32]
    plain, mirrored = predict_proba(model, x), predict_proba(model, x[:, :, ::-1])
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the views do differ
    np.testing.assert_allclose(
        predict_proba(model, x, tta="mirror"), (plain + mirrored) / 2, atol=1e-6
    )
    symmetric = np.concatenate([x[:, :, :14], x[:, :, :14][:, :, ::-1]], axis=2)
    np.testing.assert_allclose(
        predict_proba(model, symmetric, tta="mirror"), predict_proba(model, symmetric), atol=1e-5
    )
    ten = [predict_proba(model, view) for view in tta_views(x, "mirror+shifts")]
    np.testing.assert_allclose(
        predict_proba(model, x, tta="mirror+shifts"), np.mean(ten, axis=0), atol=1e-6
    )


def test_a_diverged_epoch_stops_the_member_unrecorded(small):
    """A non-finite loss stops training at once: ``state.diverged`` names the epoch, its
    learning rate and the loss, and that epoch is neither in the history nor reported."""
    spec = members.SEED_PRESET[0].with_overrides(epochs=3, learning_rate=1e30)
    seen = []
    _, state = train_member(
        spec,
        *_arrays(small),
        on_epoch_end=lambda e, *_: seen.append(e),
        verbose=0,
    )
    assert state.diverged is not None and state.diverged["epoch"] == 1
    assert state.diverged["learning_rate"] == pytest.approx(1e30)
    assert not np.isfinite(state.diverged["loss"])
    assert seen == [] and state.epoch == 0 and state.history == {} and not state.stopped_early


def test_the_state_records_the_precision_used_and_the_device(small):
    """The precision actually used (float32 here for mixed_float16 without a GPU) travels in
    the TrainState, so the driver can record it per member."""
    spec = members.SEED_PRESET[0].with_overrides(epochs=1, precision="mixed_float16")
    _, state = train_member(spec, *_arrays(small), verbose=0)
    assert state.precision == effective_precision("mixed_float16")
    assert state.device["cpu"] == device.cpu_model()
    assert state.device["gpus"] == device.gpu_names()


def test_label_smoothing_reaches_the_loss(small):
    spec = members.SEED_PRESET[0].with_overrides(label_smoothing=0.2)
    model = compile_member(spec)
    targets = loop.one_hot(small.y_val[:8])
    sure = np.where(targets > 0, 1.0, 0.0).astype(np.float32)  # certain and right
    # Smoothed targets are 0.2/10 = 0.02 for the wrong classes: a certain, right answer
    # still costs their cross-entropy, where plain cross-entropy would give ~0.
    assert float(model.loss(targets, np.clip(sure, 1e-7, 1))) > 1.0


def test_the_moving_average_is_what_validation_and_predictions_see(small, tmp_path):
    """With ema_momentum, checkpoints keep the raw weights (to resume from) and the average
    beside them; prediction.load_model, like fit's end, predicts with the average; and a
    member resumed from a checkpoint continues the same average, ending where an
    uninterrupted one ends."""
    spec = members.STRONG_PRESET[1].with_overrides(
        epochs=2, ema_momentum=0.9, batch_size=64, precision="float32"
    )
    saved = {}

    def keep(epoch, logs, model, state):
        saved[epoch] = save_checkpoint(tmp_path / f"epoch{epoch}", model, state)

    model, state = train_member(
        spec,
        *_arrays(small),
        seed=3,
        on_epoch_end=keep,
        verbose=0,
    )
    raw, _ = load_checkpoint(saved[1])
    averaged = load_model(saved[1] / checkpoint.MODEL_FILE)
    for _raw, avg, final in zip(
        raw.trainable_weights, averaged.trainable_weights, model.trainable_weights
    ):
        np.testing.assert_allclose(avg.numpy(), final.numpy(), atol=1e-6)
    assert not all(
        np.allclose(k.numpy(), a.numpy())
        for k, a in zip(raw.trainable_weights, averaged.trainable_weights)
    )  # not the average
    # Validation was scored with the averaged weights: the last val_accuracy is theirs.
    val = float(np.mean(predict_proba(averaged, small.x_val).argmax(1) == small.y_val))
    assert state.history["val_accuracy"][-1] == pytest.approx(val, abs=1e-6)


def test_a_resumed_member_continues_its_moving_average(small, tmp_path):
    # A momentum this close to 1 keeps the average at the first step's weights, far from
    # where training goes: restarted at the resumed weights, it would be near those instead.
    spec = members.STRONG_PRESET[1].with_overrides(
        epochs=2, ema_momentum=0.999999, precision="float32"
    )
    folder = tmp_path / "ckpt"  # saved as the Ray layer saves it: at the epoch's end
    train_member(
        spec.with_overrides(epochs=1),
        *_arrays(small),
        verbose=0,
        on_epoch_end=lambda e, logs, model, state: save_checkpoint(folder, model, state),
    )
    gap = lambda a, b: max(
        float(np.abs(x.numpy() - y.numpy()).max())
        for x, y in zip(a.trainable_weights, b.trainable_weights)
    )
    average, raw = load_model(folder / checkpoint.MODEL_FILE), load_checkpoint(folder)[0]
    moved = gap(average, raw)  # what one epoch moved the weights from the first step's
    assert moved > 1e-3
    resumed, _ = train_member(
        spec,
        *_arrays(small),
        resume=load_checkpoint(folder),
        verbose=0,
    )
    assert gap(resumed, average) < moved / 10 < gap(resumed, raw)
