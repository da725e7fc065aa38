"""A committee of CNNs on Fashion-MNIST, trained concurrently on Ray and fused at the
probability level.

The packages, in the order a run's data flows through them::

    data         the Fashion-MNIST files (find, download, verify, split), augmentation, and
                 the images ``committee predict`` reads
    members      what a member is: MemberSpec, presets, search spaces, architectures, seeds,
                 test-time augmentation views
    training     one member trained with Keras: state, loop, callbacks, checkpoints, device,
                 prediction (Keras; no Ray)
    ensemble     fusion rules, scores, diagnostics of the committee (NumPy/SciPy/sklearn)
    rundir       the run folder: its lifecycle and atomic writes, identity, member files,
                 results.json's schema, a finished run read back
    report       report.md, figures and the prediction tables, drawn from a run folder
    distributed  the only Ray code: connect and place, the workers' and the driver's side of
                 training, the search, batch inference
    app          the command line, the options and their defaults, one run / search /
                 prediction end to end, the live display

plus ``errors`` (every named error and the one-line form), ``log`` (the one logger) and
``validation`` (option tables). Layers (checked by import-linter, pyproject.toml): each
imports only those below it, ``|`` separating siblings that do not import each other::

    app > distributed | report > rundir > training | ensemble > members > data
        > errors | log | validation

Importing the package or any subpackage imports neither TensorFlow, Keras, JAX nor Ray and
changes no process-wide state (logging is set up by :func:`committee.log.setup`).

The Python API (:mod:`committee.app.api`), imported on first use::

    committee.load(run_dir, rule=None)   a finished run's committee: predict_proba, predict,
                                         score (CommitteeClassifier)
    committee.run(**options)             a run, as ``committee run`` (RunOptions' fields)
    committee.export(run_dir, output)    the committee as one .keras file
"""

__version__ = "0.1.0"

API = ("CommitteeClassifier", "load", "run", "export")  # committee.app.api's, on first use
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:  # imported here, not above: importing the package stays cheap
        from committee.app import api

        return getattr(api, name)
    raise AttributeError(f"module 'committee' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
