"""The data: Fashion-MNIST's official files found, downloaded and verified (``fashion_mnist``),
the training batches' augmentation (``augmentation``), and the images ``committee predict``
reads (``inputs``).

Imports only ``committee.errors``, ``log`` and ``validation``; NumPy, no Keras or Ray.
"""
