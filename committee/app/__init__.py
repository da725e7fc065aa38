"""The application: ``cli`` (the command line, one error boundary per command), ``options``
(Run/Tune/PredictOptions: defaults and constraint tables, the one home of each), ``run``,
``tune`` and ``predict`` (one command end to end), ``provenance`` (versions, git commit,
machine), ``progress`` (the live display).

The top layer: may import every package.
"""
