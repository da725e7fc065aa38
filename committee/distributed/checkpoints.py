"""A member's Ray Train storage folder, read and repaired as untrusted state (no Ray here).

Ray Train keeps, per member, ``<storage>/<member>/checkpoint_<timestamp>/`` folders (each a
``model.keras`` and a ``state.json``, see training.save_checkpoint) and a
``checkpoint_manager_snapshot.json`` that lists them. A full disk or a killed process can leave
a half-uploaded checkpoint folder or an empty snapshot; Ray then refuses to start the member
(``CheckpointManagerInitializationError``). :func:`repair` removes what Ray cannot read, so the
member resumes from the checkpoints that remain (:func:`checkpoint_paths`) or starts afresh.
Storage is a local path or a URI (``s3://…``), reached through pyarrow's filesystems.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import metadata

from committee.rundir import storage

SNAPSHOT = "checkpoint_manager_snapshot.json"
FILES = ("model.keras", "state.json")


def _entries(fs, path: str) -> list:
    import pyarrow.fs as pafs

    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, ValueError):
        return []


def checkpoint_paths(fs, member_dir: str) -> list[str]:
    """The checkpoint folders under ``member_dir``, newest first (Ray names them by time)."""
    import pyarrow.fs as pafs

    dirs = [
        e.path
        for e in _entries(fs, member_dir)
        if e.type == pafs.FileType.Directory and e.base_name.startswith("checkpoint_")
    ]
    return sorted(dirs, key=lambda p: p.rsplit("/", 1)[-1], reverse=True)


def is_whole(fs, checkpoint_dir: str) -> bool:
    """Whether a checkpoint folder holds both files, neither empty."""
    import pyarrow.fs as pafs

    infos = fs.get_file_info([f"{checkpoint_dir}/{name}" for name in FILES])
    return all(i.type == pafs.FileType.File and (i.size or 0) > 0 for i in infos)


def _snapshot_problem(fs, member_dir: str) -> str | None:
    """Why Ray could not resume from the snapshot file, or None if it can (or there is none)."""
    import pyarrow.fs as pafs

    ray_version = metadata.version("ray")
    path = f"{member_dir}/{SNAPSHOT}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        with fs.open_input_stream(path) as stream:
            snapshot = json.loads(stream.read().decode("utf-8"))
        if snapshot.get("ray_version") != ray_version:
            return f"written by Ray {snapshot.get('ray_version')}, not {ray_version}"
        names = [r["checkpoint_dir_name"] for r in snapshot.get("checkpoint_results", [])]
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        return f"unreadable ({type(exc).__name__})"
    missing = [
        n for n in names if fs.get_file_info(f"{member_dir}/{n}").type != pafs.FileType.Directory
    ]
    return f"lists missing checkpoint {missing[0]}" if missing else None


def repair(member_uri: str, log: Callable[[str], None]) -> list[str]:
    """Remove what would stop Ray Train from resuming the member stored at ``member_uri``: a
    snapshot file it cannot use, and checkpoint folders missing a file. Returns one line per
    removal (each also passed to ``log``); whole checkpoints are kept for the member to
    resume from."""
    fs, member_dir = storage.filesystem(member_uri)
    removed = []
    problem = _snapshot_problem(fs, member_dir)
    if problem is not None:
        fs.delete_file(f"{member_dir}/{SNAPSHOT}")
        removed.append(f"removed {member_uri}/{SNAPSHOT}: {problem}")
    for path in checkpoint_paths(fs, member_dir):
        if not is_whole(fs, path):
            fs.delete_dir(path)
            removed.append(f"removed the partial checkpoint {path}")
    if problem is None and len(removed):  # the snapshot may list a folder just removed
        if _snapshot_problem(fs, member_dir) is not None:
            fs.delete_file(f"{member_dir}/{SNAPSHOT}")
            removed.append(f"removed {member_uri}/{SNAPSHOT}: it listed a partial checkpoint")
    for line in removed:
        log(line)
    return removed
