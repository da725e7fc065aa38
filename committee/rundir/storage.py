"""Where a run keeps what Ray writes: Ray Train's checkpoints and a search's experiments, in the
run folder by default or under ``--storage`` (a shared path, or a URI such as s3://bucket/prefix
that pyarrow's filesystems reach). The one place a location is told apart as a path or a URI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from committee.rundir.folder import TRAIN, TUNE, check_writable

STORAGE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "file")


def is_uri(location: str | Path) -> bool:
    """Whether ``location`` is a URI (``scheme://…``) rather than a local path."""
    return "://" in str(location)


def check_storage(storage: str | None, timeout_s: float = 20.0) -> None:
    """Check ``--storage`` up front: a writable local path, or a URI whose scheme Ray Train
    supports and whose filesystem answers within ``timeout_s`` (checked in a subprocess, as
    pyarrow's cloud clients can block without end). Raises ValueError naming the value."""
    if storage is None:
        return
    if not storage.strip():
        raise ValueError(
            "--storage '' is empty; expected a path or a URI such as "
            "s3://bucket/prefix (or leave --storage out)"
        )
    if not is_uri(storage):
        check_writable(storage, option="--storage")
        return
    scheme = storage.split("://", 1)[0].lower()
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(
            f"--storage {storage!r}: scheme {scheme}:// is not supported; expected "
            f"a path or one of {', '.join(s + '://' for s in STORAGE_SCHEMES)}"
        )
    probe = (
        "import sys, pyarrow.fs as f\n"
        "fs, path = f.FileSystem.from_uri(sys.argv[1])\n"
        "fs.get_file_info(path)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", probe, storage],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise ValueError(
            f"--storage {storage!r} did not answer within {timeout_s:g} s; "
            f"expected reachable storage (check the bucket and the network)"
        ) from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        why = lines[-1][:300] if lines else f"exit status {proc.returncode}"
        raise ValueError(f"--storage {storage!r} is not reachable: {why}")


def storage_for(run_dir: Path, storage: str | None, instance: str) -> str:
    """Ray Train storage: ``<run_dir>/train`` by default, else ``<storage>/<run name>/<instance>``
    (a path or URI such as s3://…): the run's ``instance`` id keeps an ``--overwrite`` from
    resuming the checkpoints of the run it replaces."""
    if storage is None:
        return str((run_dir / TRAIN).resolve())
    if is_uri(storage):
        return f"{storage.rstrip('/')}/{run_dir.name}/{instance}"
    return str(Path(storage).expanduser().resolve() / run_dir.name / instance)


def experiment_location(
    run_dir: Path, member: str, storage: str | None = None, instance: str | None = None
) -> str:
    """Where ``member``'s Tune experiment lives: ``<run_dir>/tune/<member>`` by default, else
    ``<storage>/<run name>/<instance>/tune/<member>`` (the run's storage as
    :func:`storage_for` lays it out), so that on a multi-node
    cluster every trial writes to storage all nodes share. Raises ValueError when a storage
    is given without the run's ``instance`` id."""
    if storage is None:
        return str((Path(run_dir) / TUNE / member).resolve())
    if not instance:
        raise ValueError(f"storage {storage!r} needs the run's instance id; got {instance!r}")
    return f"{storage_for(Path(run_dir), storage, instance)}/tune/{member}"


def split_location(experiment: str | Path) -> tuple[str, str, str]:
    """``(experiment, parent, name)`` of a local folder (resolved) or a URI such as s3://…"""
    experiment = str(experiment)
    if not is_uri(experiment):
        experiment = str(Path(experiment).expanduser().resolve())
    experiment = experiment.rstrip("/")
    parent, _, name = experiment.rpartition("/")
    return experiment, parent, name


def filesystem(uri: str):
    """``(pyarrow filesystem, path)`` for a local path or a URI."""
    import pyarrow.fs as pafs

    if is_uri(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri
