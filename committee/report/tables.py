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


def write_predictions(path, table: pa.Table, root=None) -> None:
    """``table`` as Parquet at ``path``, atomically (``root``: the run folder, see
    runfolder.atomic_path)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    runfolder.write_bytes(path, buffer.getvalue(), root)


def utf8(name: str) -> str:
    """A file name as text Parquet and CSV can hold (UTF-8): bytes of a name that are not
    UTF-8 (Python keeps them as lone surrogates) written as ``\\xNN``; any other name as it is."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
        "input": pa.array([utf8(source) for source in images.sources], pa.string()),
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


MAX_PREDICTIONS_BYTES = 256 << 20  # a run's predictions.parquet: about 1 MB per 10,000 images


def read_predicted_classes(
    path: Path, names: list[str], n: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(labels, classes)`` from a run's predictions.parquet: the ``label`` column and, for
    each of ``names`` (members and ``committee_<rule>``), its ``<name>_pred`` column, each
    ``(n,)`` int64 in 0..9.

    The file is untrusted: raises :class:`~committee.rundir.folder.RunFolderError` (one line
    naming the file and the column) when it is too large, not Parquet, lacks a column, or
    holds another count of rows or a class out of range."""
    path = Path(path)
    expected = "expected the predictions.parquet committee run writes"
    try:
        if path.stat().st_size > MAX_PREDICTIONS_BYTES:
            raise runfolder.RunFolderError(
                f"{path}: larger than {MAX_PREDICTIONS_BYTES:,} bytes; {expected}"
            )
        runfolder.door.check_regular(path)  # pyarrow opens it by path
        schema = pq.read_schema(path)
        columns = ["label", *(f"{name}_pred" for name in names)]
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise runfolder.RunFolderError(f"{path}: column {missing[0]!r} is missing; {expected}")
        table = pq.read_table(path, columns=columns)
    except runfolder.RunFolderError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise runfolder.RunFolderError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}); {expected}"
        ) from None
    arrays = {}
    for column in table.column_names:
        kind = table.schema.field(column).type
        values = table.column(column).to_numpy(zero_copy_only=False)
        if not pa.types.is_integer(kind) or len(values) != n or table.column(column).null_count:
            raise runfolder.RunFolderError(
                f"{path}: column {column!r} is {kind} with {len(values):,} rows; expected "
                f"{n:,} integer classes, none missing (results.json's n_test)"
            )
        values = values.astype(np.int64)
        if len(values) and not 0 <= values.min() <= values.max() < NUM_CLASSES:
            raise runfolder.RunFolderError(
                f"{path}: column {column!r} holds {values.min()}..{values.max()}; expected "
                f"classes in 0..{NUM_CLASSES - 1}"
            )
        arrays[column] = values
    labels = arrays.pop("label")
    return labels, {name: arrays[f"{name}_pred"] for name in names}
