"""A finished run folder read back for prediction: its members' ``.keras`` files, TTA modes,
fusion rules and fitted weights, each checked before anything starts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from committee.data.fashion_mnist import NUM_CLASSES
from committee.ensemble import fusion
from committee.errors import MemberLoadError
from committee.members.tta import TTA_MODES
from committee.rundir import folder as runfolder
from committee.rundir import schema
from committee.rundir.folder import RunFolderError
from committee.rundir.member_files import member_paths
from committee.training.checkpoint import MAX_KERAS_BYTES as MAX_MODEL_BYTES
from committee.training.checkpoint import check_keras_archive


@dataclass
class Committee:
    """What prediction needs from a finished run folder."""

    name: str
    members: dict[str, tuple[bytes, str]]  # name -> (.keras file bytes, TTA mode)
    rules: list[str]  # the run's fusion rules, in results.json's order
    weights: list[float] | None  # the weighted rule's, in the order of ``members``
    results: dict | None = None  # results.json, as checked by rundir.schema
    run_dir: Path | None = None  # the folder it was read from


def load_committee(run_dir: str | os.PathLike) -> Committee:
    """Read a finished run folder: results.json checked by :mod:`committee.rundir.schema`, each
    member's ``models/<name>.keras`` (inside the folder, a zip file) and TTA mode, the
    fitted weights. Raises :class:`RunFolderError` naming the folder or file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(
            f"run folder {run_dir} does not exist; expected the folder of a finished committee run"
        )
    if runfolder.is_search(run_dir):
        raise RunFolderError(
            f"{run_dir} is a search's folder (committee tune), which keeps no trained "
            f"committee; expected a run's: train its best configurations with "
            f"{runfolder.use_of_search(run_dir)}"
        )
    results_path = run_dir / runfolder.RESULTS
    runfolder.door.require_regular(results_path, "the folder of a finished committee run")
    if (run_dir / runfolder.INCOMPLETE).exists():
        raise RunFolderError(
            f"run folder {run_dir} holds an unfinished run ({runfolder.INCOMPLETE}"
            f" present); expected a finished run: rerun it to finish"
        )
    results = schema.read_results(results_path)
    names = results["run"]["members"]
    specs = {spec["name"]: (i, spec) for i, spec in enumerate(results["config"]["members"])}
    members = {}
    for name in names:
        i, spec = specs[name]
        tta = spec.get("tta", "none")  # runs before TTA existed predicted without it
        if tta not in TTA_MODES:
            raise RunFolderError(
                f"{results_path}: field 'config.members[{i}].tta' has "
                f"{tta!r}; expected one of {', '.join(TTA_MODES)}"
            )
        members[name] = (_model_bytes(run_dir, name), tta)
    rules = [rule for rule in results["committee"] if rule in fusion.RULES]
    weights = None
    if fusion.WEIGHTED in rules:
        if results.get("weights") is None:
            raise RunFolderError(
                f"{results_path}: field 'weights' is missing; expected the "
                f"weighted rule's fitted weights"
            )
        weights = [results["weights"][name] for name in names]
        try:  # fusion's own check of the weights, before anything starts
            fusion.weighted_rule([np.full((1, NUM_CLASSES), 0.1)] * len(names), weights)
        except ValueError as exc:
            raise RunFolderError(f"{results_path}: field 'weights': {exc}") from None
    return Committee(
        name=results["run"]["name"],
        members=members,
        rules=rules,
        weights=weights,
        results=results,
        run_dir=run_dir,
    )


def load_models(committee: Committee) -> dict:
    """Each member's Keras model, in the run's order, loaded in this process in Keras' safe
    mode with the weights it predicts with (:func:`committee.training.prediction.load_member`:
    its moving average where it keeps one). Raises :class:`RunFolderError` naming the file
    that does not load."""
    from committee.training.prediction import load_member

    models = {}
    for name, (model_bytes, _) in committee.members.items():
        try:
            models[name] = load_member(name, model_bytes)
        except MemberLoadError as exc:  # its message starts with models/<name>.keras
            raise RunFolderError(f"{Path(committee.run_dir or '.') / str(exc)}") from None
    return models


def _model_bytes(run_dir: Path, name: str) -> bytes:
    path = member_paths(run_dir, name)[0]
    runfolder.door.require_regular(
        path, f"member {name}'s trained model (models/<member>.keras of a finished run)"
    )
    runfolder.check_inside(run_dir, [path])
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise RunFolderError(
            f"{path}: larger than {MAX_MODEL_BYTES:,} bytes; expected a member's .keras file"
        )
    try:
        check_keras_archive(path)
    except ValueError as exc:
        raise RunFolderError(f"{exc}; expected member {name}'s trained model") from None
    return runfolder.door.read_bytes(path)
