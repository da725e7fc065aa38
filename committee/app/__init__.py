"""The application: ``cli`` (the command line, one error boundary for every command), ``options``
(Run/Tune/Predict/ExportOptions: defaults and constraint tables, the one home of each), ``run``,
``tune``, ``predict`` and ``export`` (one command end to end), ``api`` (the Python API:
load / run / export, re-exported by ``committee``), ``provenance`` (versions, git commit,
machine), ``progress`` (the live display).

The top layer: may import every package.
"""
