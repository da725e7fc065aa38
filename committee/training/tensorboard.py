"""TensorBoard event files of a member's training, on any Keras backend.

Keras' own ``keras.callbacks.TensorBoard`` writes through ``tensorflow.summary``, so it serves
the TensorFlow backend only; elsewhere (JAX, where TensorFlow is absent or never imported)
:class:`EpochScalars` writes the same per-epoch scalars with tensorboardX, the pure-Python
writer Ray Tune already depends on. No Ray here; Keras is imported with this module, which
only training workers import.
"""

from __future__ import annotations

from pathlib import Path

import keras


def tensorboard_callback(log_dir: str | Path):
    """A Keras callback writing each epoch's losses, metrics, learning rate and planned epochs
    to event files under ``log_dir`` (the folder TensorBoard's ``--logdir`` is given)."""
    if keras.config.backend() == "tensorflow":
        return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0)
    return EpochScalars(log_dir)


class EpochScalars(keras.callbacks.Callback):
    """Per-epoch scalars with tensorboardX, named as Keras' TensorBoard names them
    (``epoch_loss``, ``epoch_accuracy``, … under ``train/`` and ``validation/``, and
    ``epoch_learning_rate``)."""

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers = {}

    def _writer(self, part: str):
        if part not in self._writers:
            from tensorboardX import SummaryWriter

            self._writers[part] = SummaryWriter(str(self.log_dir / part))
        return self._writers[part]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            part, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(part).add_scalar(f"epoch_{name}", float(value), epoch)
        rate = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
        if rate is not None:
            self._writer("train").add_scalar("epoch_learning_rate", float(rate), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
