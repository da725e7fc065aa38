"""``committee predict RUN_DIR INPUT…``: classify new images with a trained committee.

validate (run folder, inputs, output; nothing starts before all pass) -> Ray Data batch
inference, one actor pool per member (batch_inference.predict_members) -> the run's fusion
rules (fusion.fuse, with the run's fitted weights) -> one table, written atomically.

Output columns, one row per image (Parquet; CSV spells each probability list as 10
columns ``<column>_0`` … ``<column>_9``):

- ``input`` (the file), ``index`` (position in a .npy / IDX file; 0 for an image file);
- ``class``, ``class_name``: the committee's class under ``--rule`` (default mean);
- ``disagreement``: the fraction of members whose class differs from the committee's;
- ``entropy``: predictive entropy of the committee's probabilities, in nats (0..ln 10);
- as in the run's predictions.parquet (report.probability_columns): ``<member>_proba`` and
  ``<member>_pred`` per member, ``committee_<rule>_proba`` / ``_pred`` per rule of the run.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from committee import validation
from committee.data import inputs
from committee.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from committee.ensemble import fusion
from committee.log import logger
from committee.members.tta import TTA_MODES
from committee.report import render as report
from committee.rundir import folder as runfolder
from committee.rundir import schema
from committee.rundir.folder import RunFolderError
from committee.training.checkpoint import check_keras_archive
from committee.validation import Interval, Options

FORMATS = (".parquet", ".csv")
MAX_MODEL_BYTES = 1 << 30  # a member's .keras file; the presets' are under 30 MB


@dataclass
class PredictOptions:
    run_dir: str | os.PathLike
    inputs: list[str]
    output: str | None = None  # default: ./predictions-<run name>-<timestamp>.parquet
    rule: str = "mean"
    invert: bool = False
    batch_size: int = 1024
    address: str | None = None
    cpus_per_member: float | None = None
    gpus_per_member: float | None = None


@dataclass
class Committee:
    """What prediction needs from a finished run folder."""

    name: str
    members: dict[str, tuple[bytes, str]]  # name -> (.keras file bytes, TTA mode)
    rules: list[str]  # the run's fusion rules, in results.json's order
    weights: list[float] | None  # the weighted rule's, in the order of ``members``


def load_committee(run_dir: str | os.PathLike) -> Committee:
    """Read a finished run folder: results.json checked by :mod:`committee.rundir.schema`, each
    member's ``models/<name>.keras`` (inside the folder, a zip file) and TTA mode, the
    fitted weights. Raises :class:`RunFolderError` naming the folder or file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} does not exist; expected the folder of a "
                             f"finished committee run")
    results_path = run_dir / runfolder.RESULTS
    if not results_path.is_file():
        raise RunFolderError(f"{results_path} not found; expected the folder of a finished "
                             f"committee run")
    if (run_dir / runfolder.INCOMPLETE).exists():
        raise RunFolderError(f"run folder {run_dir} holds an unfinished run ({runfolder.INCOMPLETE}"
                             f" present); expected a finished run: rerun it to finish")
    results = schema.read_results(results_path)
    names = results["run"]["members"]
    specs = {spec["name"]: (i, spec) for i, spec in enumerate(results["config"]["members"])}
    members = {}
    for name in names:
        i, spec = specs[name]
        tta = spec.get("tta", "none")  # runs before TTA existed predicted without it
        if tta not in TTA_MODES:
            raise RunFolderError(f"{results_path}: field 'config.members[{i}].tta' has "
                                 f"{tta!r}; expected one of {', '.join(TTA_MODES)}")
        members[name] = (_model_bytes(run_dir, name), tta)
    rules = [rule for rule in results["committee"] if rule in fusion.RULES]
    weights = None
    if "weighted" in rules:
        if results.get("weights") is None:
            raise RunFolderError(f"{results_path}: field 'weights' is missing; expected the "
                                 f"weighted rule's fitted weights")
        weights = [results["weights"][name] for name in names]
        try:  # fusion's own check of the weights, before anything starts
            fusion.weighted_rule([np.full((1, NUM_CLASSES), 0.1)] * len(names), weights)
        except ValueError as exc:
            raise RunFolderError(f"{results_path}: field 'weights': {exc}") from None
    return Committee(name=results["run"]["name"], members=members, rules=rules, weights=weights)


def _model_bytes(run_dir: Path, name: str) -> bytes:
    path = run_dir / "models" / f"{name}.keras"
    if not path.is_file():
        raise RunFolderError(f"{path} not found; expected member {name}'s trained model "
                             f"(models/<member>.keras of a finished run)")
    runfolder.check_inside(run_dir, [path])
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise RunFolderError(f"{path}: larger than {MAX_MODEL_BYTES:,} bytes; expected a "
                             f"member's .keras file")
    try:
        check_keras_archive(path)
    except ValueError as exc:
        raise RunFolderError(f"{exc}; expected member {name}'s trained model") from None
    return path.read_bytes()


def output_path(output: str | None, run_name: str, run_dir: Path) -> Path:
    """The file to write: ``output``, else ``predictions-<run name>-<timestamp>.parquet`` in
    the current folder (not in the run folder: ``committee run --overwrite`` refuses a folder
    holding files it did not write). Raises ValueError naming ``--output``: an extension
    other than .parquet / .csv, a folder that does not exist or is not writable, a folder
    given as the file, or one of the run's own files."""
    if output is None:
        plain = run_name if re.fullmatch(r"[\w-][\w.-]{0,99}", run_name) else "run"
        return Path(f"predictions-{plain}-{datetime.now():%Y%m%d-%H%M%S}.parquet")
    path = Path(output).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"--output {output}: extension {path.suffix or '(none)'!r} is unknown; "
                         f"expected {' or '.join(FORMATS)}")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"--output {output}: folder {folder} does not exist; expected an "
                         f"existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--output {output}: folder {folder} is not writable; expected a "
                         f"writable folder")
    if path.is_dir():
        raise ValueError(f"--output {output} is a folder; expected a file name ending in "
                         f"{' or '.join(FORMATS)}")
    resolved = path.resolve()
    if resolved.is_relative_to(run_dir.resolve()) and \
            resolved.relative_to(run_dir.resolve()).parts[0] in runfolder.KNOWN_ENTRIES:
        raise ValueError(f"--output {output} would replace a file of the run folder "
                         f"{run_dir}; expected another path")
    return path


# PredictOptions' simple constraints, checked in this order (committee.validation); the run
# folder, --output and the inputs are checked by validate, in the order a user fixes them.
PREDICT_CONSTRAINTS = {
    "rule": Options(fusion.RULES),
    "batch_size": Interval(int, 1, None, closed="left"),
    "cpus_per_member": [None, Interval(float, 0, math.inf, closed="neither",
                                       noun="a finite number")],
    "gpus_per_member": [None, Interval(float, 0, math.inf, closed="left",
                                       noun="a finite number")],
}


def _address_form(options: PredictOptions) -> None:
    from committee.distributed.address import resolve
    resolve(options.address)  # its form; connect() checks that a Ray head answers


def _known_backend(options: PredictOptions) -> None:
    from committee.training.backend import resolve
    resolve(None)  # KERAS_BACKEND, the actors' backend; a bad name fails before Ray starts


PREDICT_CHECKS = (_address_form, _known_backend)


def validate(options: PredictOptions) -> tuple[Committee, inputs.Inputs, Path]:
    """Every check that needs no cluster, in the order a user fixes them: options, the run
    folder, the output path, the inputs. Raises ValueError (one line) on the first problem."""
    validation.check(options, PREDICT_CONSTRAINTS, PREDICT_CHECKS)
    committee = load_committee(options.run_dir)
    if options.rule not in committee.rules:
        raise ValueError(f"--rule {options.rule}: run {committee.name} has no such rule; "
                         f"expected one of {', '.join(committee.rules)}")
    out = output_path(options.output, committee.name, Path(options.run_dir))
    images = inputs.read_inputs(options.inputs, invert=options.invert)
    return committee, images, out


def fuse_all(committee: Committee, member_probas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each of the run's rules applied to the members' ``(n, 10)`` probabilities."""
    probas = [member_probas[name] for name in committee.members.spec]
    return {rule: fusion.fuse(probas, rule, committee.weights if rule == "weighted" else None)
            .astype(np.float32) for rule in committee.rules}


def uncertainty(committee_proba: np.ndarray,
                member_probas: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(disagreement, entropy)``, each float32 ``(n,)``: the fraction of members whose
    argmax differs from the committee's, and the entropy (nats) of ``committee_proba``
    (``(n, 10)``)."""
    chosen = committee_proba.argmax(axis=1)  # (n,)
    member_classes = np.stack([p.argmax(axis=1) for p in member_probas.values()])  # (m, n)
    disagreement = (member_classes != chosen).mean(axis=0)
    p = np.asarray(committee_proba, dtype=np.float64)
    entropy = -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=1)  # 0 log 0 = 0
    return disagreement.astype(np.float32), entropy.astype(np.float32)


def prediction_table(images: inputs.Inputs, member_probas: dict[str, np.ndarray],
                     committee_probas: dict[str, np.ndarray], rule: str) -> pa.Table:
    """The output table (module docstring: its columns), one row per image."""
    chosen = committee_probas[rule].argmax(axis=1)
    disagreement, entropy = uncertainty(committee_probas[rule], member_probas)
    columns = {"input": pa.array(images.sources, pa.string()),
               "index": pa.array(images.index, pa.int32()),
               "class": pa.array(chosen.astype(np.int8)),
               "class_name": pa.array([CLASS_NAMES[c] for c in chosen], pa.string()),
               "disagreement": pa.array(disagreement), "entropy": pa.array(entropy)}
    return pa.table({**columns, **report.probability_columns(member_probas, committee_probas)})


def write_table(path: Path, table: pa.Table) -> None:
    """Parquet or CSV by ``path``'s extension, written atomically (runfolder)."""
    if path.suffix.lower() == ".parquet":
        report.write_predictions(path, table)
        return
    import pyarrow.csv as pcsv

    flat = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_fixed_size_list(column.type):
            values = np.stack(column.to_numpy(zero_copy_only=False))  # (n, 10)
            flat.update({f"{name}_{k}": pa.array(values[:, k]) for k in range(values.shape[1])})
        else:
            flat[name] = column
    buffer = io.BytesIO()
    pcsv.write_csv(pa.table(flat), buffer)
    runfolder.write_bytes(path, buffer.getvalue())


def predict(options: PredictOptions) -> tuple[Path, pa.Table]:
    """Classify ``options.inputs`` with the committee of ``options.run_dir``; return the file
    written and its table. Raises ValueError (one line) before Ray starts on bad input."""
    from committee.distributed import batch_inference, cluster
    from committee.training import backend

    committee, images, out = validate(options)
    for note in images.notes:
        logger.info(note)
    members = ", ".join(f"{n} (tta {t})" for n, (_, t) in committee.members.spec.items())
    logger.info(f"{len(images.images):,} images from {len(set(images.sources))} file(s); "
                f"committee {committee.name}: {members}; rules {', '.join(committee.rules)}; "
                f"class by {options.rule}")
    cluster.connect(options.address)
    placement = cluster.plan_placement(len(committee.members.spec), cluster.cluster_nodes(),
                                       options.cpus_per_member, options.gpus_per_member)
    logger.info(f"Ray Data batch inference on {backend.resolve(None)}: one actor per member, "
                f"{placement.describe()} each, batches of {options.batch_size}")
    try:
        member_probas = batch_inference.predict_members(images.images, committee.members.spec,
                                                        placement, options.batch_size)
    except batch_inference.MemberLoadError as exc:  # its message starts with models/<name>.keras
        raise RunFolderError(f"{Path(options.run_dir) / str(exc)}") from None
    table = prediction_table(images, member_probas, fuse_all(committee, member_probas),
                             options.rule)
    write_table(out, table)
    return out, table


def summary(table: pa.Table) -> str:
    """One line: how many images went to each class."""
    names, counts = np.unique(table["class_name"].to_numpy(zero_copy_only=False),
                              return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return f"{table.num_rows} images: " + ", ".join(f"{names[i]} {counts[i]}" for i in order)
