"""One member trained and used with Keras — no Ray: ``loop`` (train_member), ``state``
(TrainState, time-budget arithmetic), ``callbacks``, ``batches``, ``checkpoint`` (.keras and
state.json), ``prediction`` (probabilities with TTA), ``device`` (CPU/GPU, threads,
precision), ``backend`` (TensorFlow or JAX), ``tensorboard``.

Imports ``members``, ``data`` and the base modules.
"""
