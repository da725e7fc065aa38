"""The prediction tables: the run's ``predictions.parquet`` and ``committee predict``'s output.

Probabilities are Parquet lists of 10 float32 (``<name>_proba``) beside the argmax class
(``<name>_pred``); CSV spells each list as 10 columns ``<name>_proba_0`` … ``_9``. Files are
written atomically (:mod:`committee.rundir.folder`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from committee.data import inputs
from committee.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from committee.ensemble import diagnostics
from committee.rundir import folder as runfolder


def predictions_table(
    y_test: np.ndarray,
    member_probas: dict[str, np.ndarray],
    committee_probas: dict[str, np.ndarray],
) -> pa.Table:
    """One row per test image: index, label, each member's and each rule's probabilities,
    and each one's predicted class (:func:`probability_columns`)."""
    columns = {
        "index": pa.array(np.arange(len(y_test), dtype=np.int32)),
        "label": pa.array(np.asarray(y_test, dtype=np.int8)),
    }
    return pa.table({**columns, **probability_columns(member_probas, committee_probas)})


def probability_columns(
    member_probas: dict[str, np.ndarray], committee_probas: dict[str, np.ndarray]
) -> dict[str, pa.Array]:
    """``<member>_proba`` / ``<member>_pred`` for each member, then ``committee_<rule>_proba``
    / ``committee_<rule>_pred`` for each rule: probabilities (``(n, 10)`` arrays) as
    ``fixed_size_list<float32>[10]``, predicted classes (their argmax) as int8."""
    k = NUM_CLASSES

    def probs(array: np.ndarray) -> pa.FixedSizeListArray:
        flat = pa.array(np.asarray(array, dtype=np.float32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, k)

    columns = {}
    for name, array in [
        *member_probas.items(),
        *((f"committee_{r}", p) for r, p in committee_probas.items()),
    ]:
        columns[f"{name}_proba"] = probs(array)
        columns[f"{name}_pred"] = pa.array(np.asarray(array).argmax(axis=1).astype(np.int8))
    return columns


def write_predictions(path, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    runfolder.write_bytes(path, buffer.getvalue())


def prediction_table(
    images: inputs.Inputs,
    member_probas: dict[str, np.ndarray],
    committee_probas: dict[str, np.ndarray],
    rule: str,
) -> pa.Table:
    """The output table (module docstring: its columns), one row per image."""
    chosen = committee_probas[rule].argmax(axis=1)
    disagreement, entropy = diagnostics.uncertainty(committee_probas[rule], member_probas)
    columns = {
        "input": pa.array(images.sources, pa.string()),
        "index": pa.array(images.index, pa.int32()),
        "class": pa.array(chosen.astype(np.int8)),
        "class_name": pa.array([CLASS_NAMES[c] for c in chosen], pa.string()),
        "disagreement": pa.array(disagreement),
        "entropy": pa.array(entropy),
    }
    return pa.table({**columns, **probability_columns(member_probas, committee_probas)})


def write_table(path: Path, table: pa.Table) -> None:
    """Parquet or CSV by ``path``'s extension, written atomically (runfolder)."""
    if path.suffix.lower() == ".parquet":
        write_predictions(path, table)
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
