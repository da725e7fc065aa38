"""The augmented training batches :func:`committee.training.loop.train_member` fits on.

This module imports Keras, so it is imported only when a member with augmentation trains.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from committee.data.augmentation import Augmentation, alternating_flips, augment


class AugmentedBatches(keras.utils.PyDataset):
    """The training batches of one member, shuffled and augmented
    (:mod:`committee.data.augmentation`) afresh each epoch on the CPU, whatever the backend.

    ``x`` float32 ``(n, 28, 28, 1)``; ``y_onehot`` float32 ``(n, 10)``. Batch ``i`` of epoch
    ``e`` is a pure function of ``(seed, e, i)``, so a member resumed at ``epoch`` sees the
    batches an uninterrupted run would have seen. On JAX and PyTorch two background threads
    prepare batches ahead; TensorFlow prefetches through tf.data itself.
    """

    def __init__(
        self,
        x: np.ndarray,
        y_onehot: np.ndarray,
        batch_size: int,
        augmentation: Augmentation,
        *,
        seed: int,
        epoch: int,
    ):
        workers = 1 if keras.config.backend() == "tensorflow" else 2
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.x, self.y, self.batch_size = x, y_onehot, batch_size
        self.augmentation, self.seed, self.epoch = augmentation, seed, epoch
        self.order, self.flipped = self._order(), self._flipped()

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        flipped = self.flipped[rows] if self.flipped is not None else None
        return augment(self.x[rows], self.augmentation, rng, flipped), self.y[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
        self.flipped = self._flipped()

    def _flipped(self) -> np.ndarray | None:
        """Each image's flip this epoch, for alternating flips (indexed like ``x``)."""
        if self.augmentation.flip != "alternate":
            return None
        return alternating_flips(len(self.x), self.seed, self.epoch)
