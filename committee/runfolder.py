"""The run folder: atomic writes, and a marker that says whether a run is complete.

Layout of ``RUN_DIR``::

    INCOMPLETE            present from the start of a run until every output is written
    config.json           the run's options, seeds, package versions, data checksums
    train/<member>/       Ray Train storage: per-epoch checkpoints and run state
    models/<member>.keras the trained members
    members/<member>.json history, timing and spec of a finished member
    members/<member>.npz  its validation and test probabilities
    results.json  report.md  predictions.parquet  figures/*.png

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

INCOMPLETE = "INCOMPLETE"
RESULTS = "results.json"
_UMASK = os.umask(0)
os.umask(_UMASK)


class RunFolderError(ValueError):
    """A run folder's file is missing, malformed or unsafe to use. The message is one line
    naming the file, the field or value, and what was expected."""


def check_inside(run_dir: str | os.PathLike, paths: list[Path]) -> None:
    """Raise :class:`RunFolderError` unless every path resolves (links followed) inside
    ``run_dir``."""
    root = Path(run_dir).resolve()
    for path in paths:
        if not Path(path).resolve().is_relative_to(root):
            raise RunFolderError(f"{path}: resolves to {Path(path).resolve()}, outside the run "
                                 f"folder {root}; expected every output inside it")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """``obj`` as results.json and config.json hold it (numpy scalars and arrays as numbers)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json_text(obj))


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def is_complete(run_dir: str | os.PathLike) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / RESULTS).is_file() and not (run_dir / INCOMPLETE).exists()


def prepare(run_dir: str | os.PathLike, overwrite: bool = False) -> str:
    """Make ``run_dir`` ready for a run and mark it incomplete.

    Returns ``"new"``, ``"resume"`` (an earlier run stopped part way: its finished members
    and checkpoints are reused) or ``"overwrite"``. A complete run is never overwritten
    unless ``overwrite`` is true.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"output {run_dir} exists and is not a folder; expected a folder path")
    mode = "new"
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if is_complete(run_dir) and not overwrite:
            raise FileExistsError(f"run folder {run_dir} already holds a complete run; pass "
                                  f"--overwrite to replace it or choose another --run-name")
        if not any((run_dir / n).exists() for n in (INCOMPLETE, RESULTS, "config.json")):
            raise FileExistsError(f"output {run_dir} is a non-empty folder that is not a run "
                                  f"folder; expected a new or an earlier run's folder")
        if overwrite:
            shutil.rmtree(run_dir)
            mode = "overwrite"
        else:
            mode = "resume"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / INCOMPLETE).write_text("this run has not finished; rerun it to resume\n")
    return mode


def mark_complete(run_dir: str | os.PathLike) -> None:
    (Path(run_dir) / INCOMPLETE).unlink(missing_ok=True)


def check_writable(folder: str | os.PathLike) -> None:
    """Raise a clear error unless files can be created under ``folder`` (or its nearest parent)."""
    folder = Path(folder).resolve()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {folder} is not writable ({probe} does not accept "
                              f"new files); expected a writable location")
