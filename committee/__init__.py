"""A committee of CNNs on Fashion-MNIST, trained concurrently on Ray and fused at the
probability level.

Modules, in the order data flows: ``data`` -> ``members`` -> ``training`` -> ``prediction``
-> ``fusion`` / ``scoring`` -> ``report`` (+ ``figures``, ``runfolder``). ``orchestration``
holds all Ray code; ``job`` wires one run; ``cli`` is the command line.
"""

__version__ = "0.1.0"
