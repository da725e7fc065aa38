"""The one door between the tool and the files of a run folder (no Keras, no Ray).

Writing: every file the tool creates or rewrites under a run folder ``root`` is opened here,
its folder reached one component at a time from ``root`` with ``O_NOFOLLOW`` (each a real
folder, made when missing) and the file itself opened with ``O_NOFOLLOW``: a symbolic link, a
FIFO, a device or a folder where the tool writes is refused in one line
(:class:`~committee.errors.RunFolderError`) before anything is written, so nothing is written
through it to elsewhere. ``root`` itself may be a link the user chose. Libraries that insist
on a path (matplotlib, Keras) write to a temporary name made here and renamed into place here
(:func:`atomic_path`).

Reading: :func:`open_regular` refuses anything but a regular file (a FIFO, a device, a socket)
before it could block, opening with ``O_NONBLOCK`` and checking with ``fstat``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from committee.errors import RunFolderError, file_kind

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def refusal(path: str | os.PathLike, mode: int, expected: str = "a regular file") -> RunFolderError:
    """The one-line refusal of ``path``, found to be what ``mode`` says instead of ``expected``."""
    return RunFolderError(
        f"{path} is {file_kind(mode)}; expected {expected} (the tool neither writes nor reads "
        f"through it: move it away)"
    )


def _relative_parts(root: Path, folder: Path) -> tuple[str, ...]:
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        parts = ("..",)
    if ".." in parts:
        raise RunFolderError(f"{folder} is outside the run folder {root}; expected a path inside")
    return parts


@contextlib.contextmanager
def directory(root: str | os.PathLike, folder: str | os.PathLike) -> Iterator[int]:
    """A descriptor of ``folder`` (``root`` or below it), for the block. Each component below
    ``root`` is made when missing and opened without following links; one that is a link or
    not a folder raises :class:`RunFolderError` naming it."""
    root, folder = Path(root), Path(folder)
    parts = _relative_parts(root, folder)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        here = root
        for part in parts:
            here = here / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            try:
                inner = os.open(part, _DIRECTORY, dir_fd=fd)
            except OSError:
                mode = os.lstat(part, dir_fd=fd).st_mode
                if stat.S_ISDIR(mode):
                    raise  # a real folder that cannot be opened (permissions): as it is
                raise refusal(here, mode, "a folder") from None
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _check_target(dir_fd: int, name: str, path: Path) -> None:
    """Refuse ``name`` in ``dir_fd`` unless it is absent or a regular file."""
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise refusal(path, mode)


@contextlib.contextmanager
def _temporary(path: Path, root: Path | None) -> Iterator[tuple[int, str, int]]:
    """``(folder fd, temporary name, file fd)`` of a new file beside ``path``, renamed onto
    ``path`` when the block succeeds, removed when it fails."""
    root = path.parent if root is None else Path(root)
    with directory(root, path.parent) as dir_fd:
        _check_target(dir_fd, path.name, path)
        name = f".{path.name}.{secrets.token_hex(4)}.tmp"  # folder.is_temporary's pattern
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(name, flags, 0o666, dir_fd=dir_fd)  # 0o666 less the umask
        try:
            yield dir_fd, name, fd
            _check_target(dir_fd, path.name, path)  # nothing put there meanwhile
            os.replace(name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Iterator:
    """A binary file object for the block, its bytes renamed onto ``path`` (under the run
    folder ``root``; None: ``path``'s folder) when the block succeeds. Raises
    :class:`RunFolderError` when ``path`` or a folder on the way is a link or not what it
    should be."""
    with _temporary(Path(path), root) as (_, _, fd), os.fdopen(os.dup(fd), "wb") as out:
        yield out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes by path, renamed onto
    ``path`` when the block succeeds (checks as :func:`atomic_file`)."""
    path = Path(path)
    with _temporary(path, root) as (_, name, _):
        yield path.parent / name


def open_append(path: str | os.PathLike, root: str | os.PathLike) -> BinaryIO:
    """``path`` (a log under the run folder ``root``) opened to append to, made if missing;
    a link or anything but a regular file there raises :class:`RunFolderError`."""
    path = Path(path)
    with directory(root, path.parent) as dir_fd:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path.name, flags | getattr(os, "O_CLOEXEC", 0), 0o666, dir_fd=dir_fd)
        except OSError:  # a link (ELOOP) or a FIFO without a reader (ENXIO)
            mode = os.lstat(path.name, dir_fd=dir_fd).st_mode
            if stat.S_ISREG(mode):
                raise
            raise refusal(path, mode) from None
    return _regular(fd, path, "ab")


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened to read, links followed, only if it is a regular file: a FIFO, a
    device or a socket raises :class:`RunFolderError` before any read could block."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # a socket cannot be opened at all (ENXIO): say what it is
        with contextlib.suppress(OSError):
            mode = os.stat(path).st_mode
            if not stat.S_ISREG(mode):
                raise refusal(path, mode) from None
        raise
    return _regular(fd, Path(path), "rb")


def _regular(fd: int, path: Path, mode: str) -> BinaryIO:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise refusal(path, st.st_mode)
    os.set_blocking(fd, True)
    return os.fdopen(fd, mode)


def read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`); at most ``limit`` + 1."""
    with open_regular(path) as f:
        return f.read() if limit is None else f.read(limit + 1)


def require_regular(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`RunFolderError` unless ``path`` (links followed) is a regular file: a
    missing one as "``path`` not found; expected ``expected``", anything else (a FIFO, a
    folder, a device) as :func:`refusal`, so a FIFO is named as one and not called missing."""
    try:
        check_regular(path)
    except FileNotFoundError:
        raise RunFolderError(f"{path} not found; expected {expected}") from None


def check_regular(path: str | os.PathLike) -> None:
    """Raise :class:`RunFolderError` unless ``path`` (links followed) is a regular file, for
    a library that opens it by path; a missing file raises FileNotFoundError."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise refusal(path, mode)
