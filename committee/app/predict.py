"""``committee predict RUN_DIR INPUT…``: classify new images with a trained committee.

validate (run folder, inputs, output; nothing starts before all pass) -> Ray Data batch
inference, one actor pool per member (batch_inference.predict_members) -> the run's fusion
rules (fusion.fuse, with the run's fitted weights) -> one table, written atomically.

Output columns, one row per image (Parquet; CSV spells each probability list as 10
columns ``<column>_0`` … ``<column>_9``):

- ``input`` (the file; bytes of its name that are not UTF-8 as ``\\xNN``), ``index``
  (position in a .npy / IDX file; 0 for an image file);
- ``class``, ``class_name``: the committee's class under ``--rule`` (default mean);
- ``disagreement``: the fraction of members whose class differs from the committee's;
- ``entropy``: predictive entropy of the committee's probabilities, in nats (0..ln 10);
- as in the run's predictions.parquet (report.tables.probability_columns): ``<member>_proba`` and
  ``<member>_pred`` per member, ``committee_<rule>_proba`` / ``_pred`` per rule of the run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from committee import log, validation
from committee.app.options import PREDICT_CHECKS, PREDICT_CONSTRAINTS, PredictOptions
from committee.data import inputs
from committee.ensemble import fusion
from committee.errors import usage_errors
from committee.log import logger, plural
from committee.report.tables import prediction_table, write_table
from committee.rundir import folder as runfolder
from committee.rundir.finished_run import Committee, load_committee
from committee.rundir.folder import RunFolderError

FORMATS = (".parquet", ".csv")


def output_path(output: str | None, run_name: str, run_dir: Path) -> Path:
    """The file to write: ``output``, else ``predictions-<run name>-<timestamp>.parquet`` in
    the current folder (not in the run folder: ``committee run --overwrite`` refuses a folder
    holding files it did not write). Raises ValueError naming ``--output``: an extension
    other than .parquet / .csv, a folder that does not exist or is not writable, a folder
    given as the file, or one of the run's own files."""
    if output is None:
        plain = run_name if re.fullmatch(r"[\w-][\w.-]{0,99}", run_name) else "run"
        return Path(f"predictions-{plain}-{runfolder.stamp()}.parquet")
    path = Path(output).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"--output {output}: extension {path.suffix or '(none)'!r} is unknown; "
            f"expected {' or '.join(FORMATS)}"
        )
    check_output_file(output, path, run_dir, " or ".join(FORMATS))
    return path


def check_output_file(output, path: Path, run_dir: Path, expected: str) -> None:
    """The checks every output file of a command gets (predict's table, export's model):
    raises ValueError naming ``--output`` when its name cannot be written there
    (:func:`~committee.rundir.folder.unwritable_name`: too long, not encodable), when its
    folder does not exist or is not writable, when it is a folder (``expected``: what a file
    name should end in), or when it would replace one of the run folder's own files."""
    folder = path.parent
    why = runfolder.unwritable_name(path)
    if why:
        raise ValueError(f"--output {output}: {why}; expected a shorter file name")
    if not folder.is_dir():
        raise ValueError(
            f"--output {output}: folder {folder} does not exist; expected an existing folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"--output {output}: folder {folder} is not writable; expected a writable folder"
        )
    if path.is_dir():
        raise ValueError(
            f"--output {output} is a folder; expected a file name ending in {expected}"
        )
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # refused here, before any work, as the write itself would refuse it (rundir.door)
        kind = "a symbolic link" if path.is_symlink() else "not a regular file (a FIFO?)"
        raise ValueError(
            f"--output {output} is {kind}; expected a new or regular file ending in {expected}"
        )
    resolved = path.resolve()
    if (
        resolved.is_relative_to(run_dir.resolve())
        and resolved.relative_to(run_dir.resolve()).parts[0] in runfolder.KNOWN_ENTRIES
    ):
        raise ValueError(
            f"--output {output} would replace a file of the run folder {run_dir}; "
            "expected another path"
        )


def validate(options: PredictOptions) -> tuple[Committee, inputs.Inputs, Path]:
    """Every check that needs no cluster, in the order a user fixes them: options, the run
    folder, the output path, the inputs. Raises ValueError (one line) on the first problem."""
    validation.check(options, PREDICT_CONSTRAINTS, PREDICT_CHECKS)
    committee = load_committee(options.run_dir)
    if options.rule not in committee.rules:
        raise ValueError(
            f"--rule {options.rule}: run {committee.name} has no such rule; "
            f"expected one of {', '.join(committee.rules)}"
        )
    out = output_path(options.output, committee.name, Path(options.run_dir))
    images = inputs.read_inputs(options.inputs, invert=options.invert)
    return committee, images, out


def fuse_rule(committee: Committee, member_probas: dict[str, np.ndarray], rule: str) -> np.ndarray:
    """The run's ``rule`` (with its fitted weights for ``weighted``) applied to the members'
    ``(n, 10)`` probabilities: float32 ``(n, 10)``."""
    probas = [member_probas[name] for name in committee.members]
    weights = committee.weights if rule == fusion.WEIGHTED else None
    return fusion.fuse(probas, rule, weights).astype(np.float32)


def fuse_all(committee: Committee, member_probas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each of the run's rules applied to the members' ``(n, 10)`` probabilities."""
    return {rule: fuse_rule(committee, member_probas, rule) for rule in committee.rules}


def predict(options: PredictOptions) -> tuple[Path, pa.Table]:
    """Classify ``options.inputs`` with the committee of ``options.run_dir``; return the file
    written and its table. Raises ValueError (one line) before Ray starts on bad input."""
    log.setup()
    from committee.distributed import batch_inference, cluster
    from committee.training import backend

    with usage_errors():  # a ValueError here is bad input, not a failure of the work
        committee, images, out = validate(options)
    for note in images.notes:
        logger.info(note)
    members = ", ".join(f"{n} (tta {t})" for n, (_, t) in committee.members.items())
    logger.info(
        f"{plural(len(images.images), 'image', thousands=True)} from "
        f"{plural(len(set(images.sources)), 'file')}; "
        f"committee {committee.name}: {members}; rules {', '.join(committee.rules)}; "
        f"class by {options.rule}"
    )
    cluster.connect(options.address)
    placement = cluster.plan_placement(
        len(committee.members),
        cluster.cluster_nodes(),
        options.cpus_per_member,
        options.gpus_per_member,
    )
    logger.info(
        f"Ray Data batch inference on {backend.resolve(None)}: one actor per member, "
        f"{placement.describe()} each, batches of {options.batch_size}"
    )
    try:
        member_probas = batch_inference.predict_members(
            images.images, committee.members, placement, options.batch_size
        )
    except batch_inference.MemberLoadError as exc:  # its message starts with models/<name>.keras
        raise RunFolderError(f"{Path(options.run_dir) / str(exc)}") from None
    table = prediction_table(
        images, member_probas, fuse_all(committee, member_probas), options.rule
    )
    write_table(out, table)
    return out, table


def summary(table: pa.Table) -> str:
    """One line: how many images went to each class."""
    names, counts = np.unique(
        table["class_name"].to_numpy(zero_copy_only=False), return_counts=True
    )
    order = np.argsort(-counts, kind="stable")
    counted = ", ".join(f"{names[i]} {counts[i]}" for i in order)
    return f"{plural(table.num_rows, 'image')}: {counted}"
