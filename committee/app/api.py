"""The Python API: a finished run's committee as a scikit-learn-style classifier, a run started
from Python with the command line's options, and the single-file export.

>>> import committee
>>> clf = committee.load("runs/quick")                    # in-process Keras, no Ray
>>> clf.predict_proba(x_test[:5])                          # uint8 (5, 28, 28): float32 (5, 10)
>>> clf.score(x_test, y_test)                              # accuracy of the mean rule
>>> committee.run(epochs=2, limit_train=6000, run_name="quick")   # as `committee run ...`
>>> committee.export("runs/quick", "quick.keras")          # as `committee export ...`

Predictions take the path ``committee predict`` takes, in this process instead of Ray actors:
each member's ``.keras`` file loaded in Keras' safe mode with the weights it predicts with,
its test-time augmentation (:func:`committee.training.prediction.predict_proba`), then the
run's fusion rule with its fitted weights (:func:`committee.app.predict.fuse_rule`). Keras
runs on the backend this process imports it with (``KERAS_BACKEND``, else TensorFlow); the
members load under either.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from committee import validation
from committee.app.options import PREDICT_CONSTRAINTS, ExportOptions, PredictOptions, RunOptions
from committee.app.predict import fuse_rule
from committee.data import inputs
from committee.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from committee.rundir.finished_run import load_committee, load_models


class CommitteeClassifier:
    """The committee of a finished run, like scikit-learn's soft-voting ``VotingClassifier``
    (already fitted: its members were trained by ``committee run``).

    Parameters
    ----------
    run_dir : str or path
        The folder of a finished ``committee run`` (holding ``results.json`` and
        ``models/<member>.keras``).
    rule : {"mean", "weighted", "geometric"}, default "mean"
        The fusion rule of :meth:`predict_proba`, one of the run's rules: ``mean`` (the
        arithmetic mean of the members' probabilities), ``weighted`` (the run's weights,
        fitted on its validation split), ``geometric`` (the normalised geometric mean).
    batch_size : int, default 1024
        Images per Keras ``predict`` call (what the run predicted its test set with).

    Attributes
    ----------
    name : str
        The run's name.
    members_ : list of str
        The members, in the run's order.
    tta_ : dict of str to str
        Each member's test-time augmentation (none, mirror or mirror+shifts), as in the run.
    weights_ : dict of str to float or None
        The weighted rule's fitted weights (None when the run has no weighted rule).
    rules_ : list of str
        The run's rules; ``rule`` is one of them.
    classes_ : ndarray of int64, shape (10,)
        The class labels 0..9; ``class_names_`` their names ("T-shirt/top", ...).
    results_ : dict
        The run's ``results.json`` (``results_["committee"][rule]["accuracy"]``: the test
        accuracy of each rule).

    Raises
    ------
    RunFolderError (a ValueError)
        The folder is not a finished run, a file of it is damaged, or a member's model does
        not load in Keras' safe mode; one line naming the file.
    ValueError
        ``rule`` is not one of the run's rules, or ``batch_size`` is not an integer in
        1..1000000.

    Notes
    -----
    Images: an array of shape ``(n, 28, 28)`` or ``(n, 28, 28, 1)``, ``n >= 1``, light garments
    on a dark background as in Fashion-MNIST, whose dtype decides its scale: an integer dtype
    (e.g. uint8) holds pixels 0..255 and is divided by 255; a float dtype (float16, float32,
    float64) holds pixel / 255 in [0, 1] and is used as it is. Checked once, before any model
    runs; a bad array raises :class:`~committee.errors.InputError` (a ValueError) naming the
    argument, what was found and what was expected.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        rule: str | None = None,
        batch_size: int = PredictOptions.batch_size,
    ):
        validation.check(
            SimpleNamespace(batch_size=batch_size),
            {"batch_size": PREDICT_CONSTRAINTS["batch_size"]},
            name=str,
        )
        self._committee = load_committee(run_dir)
        self.run_dir, self.batch_size = Path(run_dir), batch_size
        self.rule = PredictOptions.rule if rule is None else rule
        committee = self._committee
        self._models = load_models(committee)
        self.name = committee.name
        self.members_ = list(committee.members)
        self.tta_ = {name: tta for name, (_, tta) in committee.members.items()}
        self.weights_ = (
            None if committee.weights is None else dict(zip(self.members_, committee.weights))
        )
        self.rules_ = list(committee.rules)
        self.classes_ = np.arange(NUM_CLASSES, dtype=np.int64)
        self.class_names_ = list(CLASS_NAMES)
        self.results_ = committee.results

    @property
    def rule(self) -> str:
        """The fusion rule of :meth:`predict_proba`, :meth:`predict` and :meth:`score`; set
        it to another of the run's rules (``rules_``), checked (ValueError) when set."""
        return self._rule

    @rule.setter
    def rule(self, rule: str) -> None:
        validation.check(
            SimpleNamespace(rule=rule), {"rule": PREDICT_CONSTRAINTS["rule"]}, name=str
        )
        if rule not in self._committee.rules:
            raise ValueError(
                f"rule {rule!r}: run {self._committee.name} has no such rule; expected one of "
                f"{', '.join(self._committee.rules)}"
            )
        self._rule = rule

    def __repr__(self) -> str:
        return (
            f"CommitteeClassifier({str(self.run_dir)!r}, rule={self.rule!r}; members "
            f"{', '.join(f'{n} (tta {t})' for n, t in self.tta_.items())})"
        )

    def _member_probas(self, images: np.ndarray) -> dict[str, np.ndarray]:
        from committee.training.prediction import predict_proba

        return {
            name: predict_proba(model, images, batch_size=self.batch_size, tta=self.tta_[name])
            for name, model in self._models.items()
        }

    def member_proba(self, x) -> dict[str, np.ndarray]:
        """Each member's class probabilities of ``x`` (with its TTA).

        Parameters
        ----------
        x : array of shape (n, 28, 28) or (n, 28, 28, 1)
            uint8 (or another integer dtype) pixels 0..255, or floats 0..1 (class Notes).

        Returns
        -------
        dict of str to ndarray of float32, shape (n, 10)
            Member name -> its probabilities, in the run's member order.

        Raises
        ------
        InputError (a ValueError)
            ``x`` of another dtype, shape or range (one line starting with ``x:``).
        """
        return self._member_probas(inputs.images_from_array(x, "x"))

    def predict_proba(self, x) -> np.ndarray:
        """The committee's class probabilities of ``x`` under :attr:`rule`.

        Parameters
        ----------
        x : array of shape (n, 28, 28) or (n, 28, 28, 1)
            uint8 (or another integer dtype) pixels 0..255, or floats 0..1 (class Notes).

        Returns
        -------
        ndarray of float32, shape (n, 10)
            Rows sum to 1; column ``k`` is class ``k`` (``class_names_[k]``). For the run's
            test images, the run's ``committee_<rule>_proba`` in ``predictions.parquet``.

        Raises
        ------
        InputError (a ValueError)
            ``x`` of another dtype, shape or range (one line starting with ``x:``).
        """
        probas = self.member_proba(x)
        return fuse_rule(self._committee, probas, self.rule)

    def predict(self, x) -> np.ndarray:
        """The committee's class of each image of ``x``: ``argmax`` of :meth:`predict_proba`.

        Returns
        -------
        ndarray of int64, shape (n,)
            Class labels 0..9 (``class_names_[label]`` names one).

        Raises
        ------
        InputError (a ValueError)
            As :meth:`predict_proba`.
        """
        return np.argmax(self.predict_proba(x), axis=1).astype(np.int64)

    def score(self, x, y) -> float:
        """The committee's accuracy on ``x`` with true labels ``y`` (the fraction of images
        whose :meth:`predict` is their label), as ``results.json``'s
        ``committee.<rule>.accuracy`` is for the test set.

        Parameters
        ----------
        x : array of shape (n, 28, 28) or (n, 28, 28, 1)
            uint8 (or another integer dtype) pixels 0..255, or floats 0..1 (class Notes).
        y : array of integers, shape (n,)
            The true class labels, 0..9.

        Returns
        -------
        float
            Accuracy in [0, 1].

        Raises
        ------
        InputError (a ValueError)
            ``x`` or ``y`` of another dtype, shape or range (one line starting with ``x:``
            or ``y:``); both are checked before any model runs.
        """
        images = inputs.images_from_array(x, "x")
        labels = inputs.labels_from_array(y, len(images), "y")
        predicted = np.argmax(
            fuse_rule(self._committee, self._member_probas(images), self.rule), axis=1
        )
        return float(np.mean(predicted == labels))


def load(
    run_dir: str | os.PathLike, rule: str | None = None, batch_size: int = PredictOptions.batch_size
) -> CommitteeClassifier:
    """The committee of the finished run in ``run_dir`` (:class:`CommitteeClassifier`, whose
    parameters and errors these are)."""
    return CommitteeClassifier(run_dir, rule=rule, batch_size=batch_size)


RUN_FIELDS = tuple(field.name for field in dataclasses.fields(RunOptions))


def run(options: RunOptions | None = None, /, **fields) -> CommitteeClassifier:
    """Train and score a committee as ``committee run`` does (a private local Ray, unless
    ``address`` names a cluster); return it loaded (:func:`load`, mean rule).

    Parameters
    ----------
    options : RunOptions, optional
        The run's options (:class:`committee.app.options.RunOptions`, the command line's
        options and their defaults); or give them as keywords instead.
    **fields
        ``RunOptions``' fields by name, the command line's options with ``_`` for ``-``:
        e.g. ``run(preset="seed", epochs=2, limit_train=6000, run_name="quick")``;
        ``members`` is a list of names (``["model1", "model3"]``).

    Returns
    -------
    CommitteeClassifier
        The finished run's committee; ``run_dir`` is its folder, ``results_`` its
        ``results.json``.

    Raises
    ------
    TypeError
        A keyword that is not an option, or both ``options`` and keywords.
    UsageError (a ValueError)
        A bad option or environment variable, found before anything starts (the command
        line's exit status 2), one line.
    CommitteeError (a ValueError)
        A known condition: a run folder, data or member that cannot be used (exit status 2).
    """
    from committee.app.run import run as run_committee

    if options is not None and fields:
        raise TypeError("run() takes RunOptions or keyword options, not both")
    if options is None:
        unknown = sorted(set(fields) - set(RUN_FIELDS))
        if unknown:
            raise TypeError(
                f"run() got unknown option {unknown[0]!r}; expected one of {', '.join(RUN_FIELDS)}"
            )
        if isinstance(fields.get("members"), str):
            raise TypeError(
                f"members {fields['members']!r} is a string; expected a list of member names"
            )
        options = RunOptions(**fields)
    return load(run_committee(options))


def export(
    run_dir: str | os.PathLike,
    output: str | os.PathLike = ExportOptions.output,
    rule: str = ExportOptions.rule,
    overwrite: bool = ExportOptions.overwrite,
) -> Path:
    """Write the committee of ``run_dir`` as one Keras model file, as ``committee export``
    does (:mod:`committee.app.export`): the members, each member's test-time augmentation
    built in as layers, and ``rule`` (mean, weighted with the run's fitted weights, or
    geometric). It
    loads with ``keras.saving.load_model(path, safe_mode=True)``; its input is float32
    ``(n, 28, 28, 1)`` in [0, 1], its output float32 ``(n, 10)`` probabilities.

    Returns the file written. Raises ValueError (one line) on a bad option, run folder or
    output path (an existing file unless ``overwrite``), before any model loads;
    RunFolderError when a member's model does not load; RuntimeError when the saved file
    does not reproduce the committee (nothing is then written)."""
    from committee.app.export import export as export_committee

    options = ExportOptions(run_dir=run_dir, output=str(output), rule=rule, overwrite=overwrite)
    return export_committee(options)[0]
