"""A committee of CNNs on Fashion-MNIST, trained concurrently on Ray and fused at the
probability level.

Modules, in the order data flows: ``data`` -> ``members`` -> ``training`` -> ``prediction``
-> ``fusion`` / ``scoring`` -> ``report`` (+ ``figures``, ``runfolder``). The Ray code is
``cluster`` (connect, place), ``orchestration`` (train, predict, score the members),
``batch_inference`` (``committee predict``) and ``tuning``; ``member_files`` keeps a finished
member's files; ``job`` wires one run; ``cli`` is the command line.
"""

__version__ = "0.1.0"
