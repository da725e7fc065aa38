"""The run folder: atomic writes, its lifecycle (new, resume, overwrite), and one writer.

Layout of ``RUN_DIR``::

    INCOMPLETE            present from the start of a run until every output is written
    config.json           this tool's marker, the run's identity (identity.py) and options
    train/<member>/       Ray Train storage: per-epoch checkpoints and run state
    models/<member>.keras the trained members
    members/<member>.json history, timing and spec of a finished member
    members/<member>.npz  its validation and test probabilities
    results.json  report.md  predictions.parquet  figures/*.png

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted run never leaves a half-written file under a final name; the writes go through
:mod:`committee.rundir.door`, which follows no link out of the folder. Beside the folder,
``.<name>.lock`` exists while a run holds it (:class:`RunLock`) and ``.<name>.replaced`` while
an ``--overwrite`` has not finished (the old run, put back if the new one fails).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import secrets
import shutil
import stat
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from committee.errors import RunFolderError
from committee.log import logger, plural
from committee.rundir import door

INCOMPLETE = "INCOMPLETE"
RESULTS = "results.json"
CONFIG = "config.json"
TOOL = "fashion-committee"  # config.json's marker: the folder is this tool's
REPORT = "report.md"
PREDICTIONS = "predictions.parquet"
SAMPLES = "samples.npz"  # the sample images report.render draws
FIGURES = "figures"  # the folder of the PNG figures (their names: report.figures)
MODELS = "models"  # models/<member>.keras
MEMBERS = "members"  # members/<member>.json and .npz
BEST_CONFIGS = "best_configs.json"  # a search's
TRIALS = "trials.parquet"  # a search's
TRAIN = "train"  # Ray Train's storage of a run, unless --storage
TUNE = "tune"  # a search's Tune experiments, unless --storage
LOGS = "logs"  # logs/<member>.log and error.log
TENSORBOARD = "tensorboard"  # tensorboard/<member>/
# What a run or a search writes at the top; --overwrite refuses a folder holding anything else
# anywhere in its tree (survey).
KNOWN_ENTRIES = frozenset(
    {
        INCOMPLETE,
        RESULTS,
        CONFIG,
        REPORT,
        PREDICTIONS,
        SAMPLES,
        FIGURES,
        MEMBERS,
        MODELS,
        TRAIN,
        TUNE,
        LOGS,
        TENSORBOARD,
        BEST_CONFIGS,
        TRIALS,
    }
)


def check_inside(run_dir: str | os.PathLike, paths: list[Path]) -> None:
    """Raise :class:`RunFolderError` unless every path resolves (links followed) inside
    ``run_dir``."""
    root = Path(run_dir).resolve()
    for path in paths:
        if not Path(path).resolve().is_relative_to(root):
            raise RunFolderError(
                f"{path}: resolves to {Path(path).resolve()}, outside the run "
                f"folder {root}; expected every output inside it"
            )


def check_outputs(run_dir: str | os.PathLike, paths: list[Path]) -> None:
    """Raise :class:`RunFolderError` unless every path resolves inside ``run_dir``
    (:func:`check_inside`) and has a name :func:`atomic_path` can write
    (:func:`unwritable_name`; a name comes from the folder's own files, a member's), in a
    folder that takes new files (not read-only, not on a read-only file system)."""
    check_inside(run_dir, paths)
    for path in paths:
        why = unwritable_name(path)
        if why:
            raise RunFolderError(f"{path}: {why}; expected names that fit (a shorter member name)")
    for folder in sorted({Path(path).parent for path in paths}):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise RunFolderError(
                f"{folder} does not accept new files (read-only, or a read-only file "
                f"system); expected a writable folder to redraw into"
            )


# atomic_path's temporary names: ".<name>.<mkstemp's 8 characters>.tmp".
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
TEMPORARY_EXTRA = len("..12345678.tmp")  # what a temporary name adds to the file's


def unwritable_name(path: str | os.PathLike) -> str | None:
    """Why :func:`atomic_path` cannot write ``path`` whatever the disk holds, or None: its file
    name cannot be encoded in the file system's encoding, or, with the
    :data:`TEMPORARY_EXTRA` bytes of its temporary name, is longer than the file system of its
    nearest existing folder takes (``PC_NAME_MAX``, usually 255 bytes). The reason reads
    after the path in a message: "<path>: <reason>; expected ..."."""
    name = Path(path).name
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError as exc:
        return f"its name cannot be encoded in the file system's encoding {exc.encoding}"
    folder = Path(path).parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        most = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):  # not known here: the common limit
        most = 255
    if size + TEMPORARY_EXTRA > most:
        return (
            f"its name of {size} bytes is too long for its file system, which takes "
            f"{most} bytes, {TEMPORARY_EXTRA} of them for the temporary file it is written "
            f"through first"
        )
    return None


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one that :func:`atomic_path` writes to before renaming."""
    return _TEMPORARY.fullmatch(name) is not None


def remove_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` that a killed process left anywhere
    in ``run_dir`` (its rename never came). Only under the folder's lock (:class:`RunLock`),
    when no other process writes there. Returns the files removed."""
    removed = []
    for folder, _, names in os.walk(run_dir):  # symbolic links to folders are not followed
        for name in filter(is_temporary, names):
            path = Path(folder) / name
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_path(path: str | os.PathLike, root: str | os.PathLike | None = None):
    """A temporary path beside ``path``, renamed onto it if the block succeeds (door.atomic_path:
    ``root`` the run folder, every folder from it to ``path`` checked; None: ``path``'s
    folder)."""
    return door.atomic_path(path, root)


def write_bytes(
    path: str | os.PathLike, data: bytes, root: str | os.PathLike | None = None
) -> None:
    """Write ``data`` to ``path`` atomically through the door (``root``: as :func:`atomic_path`)."""
    with door.atomic_file(path, root) as out:
        out.write(data)


def write_text(path: str | os.PathLike, text: str, root: str | os.PathLike | None = None) -> None:
    write_bytes(path, text.encode("utf-8"), root)


def make_folder(run_dir: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Make ``run_dir / relative`` (each folder on the way a real folder, no link: door.directory)
    and return its path. Raises :class:`RunFolderError` naming a link or a file in the way."""
    with door.directory(run_dir, Path(run_dir) / relative):
        return Path(run_dir) / relative


def json_text(obj: Any) -> str:
    """``obj`` as results.json and config.json hold it (numpy scalars and arrays as numbers)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(path: str | os.PathLike, obj: Any, root: str | os.PathLike | None = None) -> None:
    write_text(path, json_text(obj), root)


def write_npz(
    path: str | os.PathLike, root: str | os.PathLike | None = None, **arrays: np.ndarray
) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(path, buffer.getvalue(), root)


def copy_file(
    src: str | os.PathLike, dst: str | os.PathLike, root: str | os.PathLike | None = None
) -> None:
    """Copy the regular file ``src`` onto ``dst`` atomically (``root``: as :func:`atomic_path`)."""
    with door.open_regular(src) as source, door.atomic_file(dst, root) as out:
        shutil.copyfileobj(source, out)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON data of ``path``. A file that is not JSON raises ValueError, one nested too
    deeply for Python's parser included (its RecursionError would be taken for a failure
    of the tool, not a damaged file), and so does anything but a regular file
    (:class:`RunFolderError`, door.open_regular), refused before it could block."""
    text = door.read_bytes(path).decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def stamp(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: the local time for people to read, then 24 random bits, so
    that what is named by it (an unnamed run's folder, a prediction file) differs between
    commands started in the same second (``for s in 0 1; do committee run --seed $s & done``)."""
    return f"{now or datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def is_complete(run_dir: str | os.PathLike) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / RESULTS).is_file() and not (run_dir / INCOMPLETE).exists()


def _aside(run_dir: Path) -> Path:
    """Where ``--overwrite`` keeps the run it replaces until the new one has finished."""
    return run_dir.parent / f".{run_dir.name}.replaced"


def read_marker(run_dir: Path) -> dict | None:
    """The folder's ``config.json`` if this tool wrote it (its ``tool`` key), else None."""
    try:
        config = read_json(run_dir / CONFIG)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("tool") == TOOL else None


def is_search(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` is a search's folder (``committee tune``): its config.json records
    a search, or it holds a search's own outputs (best_configs.json, trials.parquet)."""
    run_dir = Path(run_dir)
    marker = read_marker(run_dir)
    identity = marker.get("identity") if marker else None
    if isinstance(identity, dict) and identity.get("kind") == "tune":
        return True
    return (run_dir / BEST_CONFIGS).is_file() or (run_dir / TRIALS).is_file()


def search_preset(run_dir: str | os.PathLike) -> str | None:
    """The preset a search's config.json records (a plain name), else None."""
    marker = read_marker(Path(run_dir))
    identity = marker.get("identity") if marker else None
    preset = identity.get("preset") if isinstance(identity, dict) else None
    return preset if isinstance(preset, str) and preset.isidentifier() else None


def use_of_search(run_dir: str | os.PathLike) -> str:
    """What to run to predict with a search's result: the run of its best configurations."""
    run_dir = Path(run_dir)
    preset = search_preset(run_dir)
    with_preset = f" --preset {preset}" if preset and preset != "seed" else ""
    return (
        f"committee run{with_preset} --config {run_dir / BEST_CONFIGS}, then predict "
        f"with that run's folder"
    )


_NAME = r"[\w-][\w.-]*"  # a member's name (or a figure's) as a file name part; never hidden
# What the tool writes in each of its flat folders, by name (a killed write's temporaries aside).
TOOL_FILES = {
    MODELS: re.compile(rf"{_NAME}\.keras"),
    MEMBERS: re.compile(rf"{_NAME}\.(json|npz)"),
    LOGS: re.compile(rf"{_NAME}\.log"),
    FIGURES: re.compile(rf"{_NAME}\.png"),
}
TENSORBOARD_FILE = re.compile(r"events\.out\.tfevents\..+")  # below tensorboard/<member>/
# What Ray Train writes in train/<member>/ (Ray's hidden markers aside): its checkpoint folders,
# each holding what the worker saved (training.checkpoint), and its checkpoints' record.
RAY_TRAIN_FILES = re.compile(r"checkpoint_manager_snapshot\.json")
RAY_CHECKPOINT = re.compile(r"checkpoint_[\w.:-]+")
CHECKPOINT_FILES = re.compile(r"state\.json|model\.keras")
# Ray's storage folders: <member>/ folders (their content Ray's own, not looked into) and Ray's
# hidden marker files.
RAY_FOLDERS = (TRAIN, TUNE)


def survey(run_dir: str | os.PathLike) -> tuple[list[Path], RunFolderError | None]:
    """Look through the whole tree of a run folder, following no link: returns ``(foreign,
    wrong)``, the paths the tool never writes (sorted; :data:`KNOWN_ENTRIES` at the top,
    :data:`TOOL_FILES` in their folders, member folders of event files in tensorboard/ and of
    Ray's storage in train/ and tune/) and the refusal of the first path where the tool writes
    that is not a regular file (or a real folder): a link, a FIFO, a device (None if none)."""
    run_dir = Path(run_dir)
    foreign: list[Path] = []
    wrong: list[RunFolderError] = []

    def entries(folder: Path) -> list[tuple[Path, int]]:
        names = sorted(n for n in os.listdir(folder) if not is_temporary(n))
        return [(folder / n, os.lstat(folder / n).st_mode) for n in names]

    def expect(path: Path, mode: int, folder: bool) -> bool:
        ok = stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)
        if not ok:
            wrong.append(door.refusal(path, mode, "a folder" if folder else "a regular file"))
        return ok

    for path, mode in entries(run_dir):
        name = path.name
        if name not in KNOWN_ENTRIES:
            foreign.append(path)
        elif name not in TOOL_FILES and name not in (TENSORBOARD, *RAY_FOLDERS):
            expect(path, mode, folder=False)
        elif not expect(path, mode, folder=True):
            pass
        elif name in TOOL_FILES:
            for inner, inner_mode in entries(path):
                if TOOL_FILES[name].fullmatch(inner.name):
                    expect(inner, inner_mode, folder=False)
                else:
                    foreign.append(inner)
        else:  # tensorboard/<member>/ of event files; Ray's <member>/ (not looked into)
            for member, member_mode in entries(path):
                if stat.S_ISLNK(member_mode):
                    wrong.append(door.refusal(member, member_mode, "a folder"))
                elif stat.S_ISDIR(member_mode):
                    if name == TENSORBOARD:
                        foreign += _foreign_events(member, wrong)
                    elif name == TRAIN:
                        foreign += _foreign_in_ray_train(member)
                elif name == TENSORBOARD or not member.name.startswith("."):  # Ray's markers
                    foreign.append(member)
    return sorted(foreign), (wrong[0] if wrong else None)


def _foreign_events(member: Path, wrong: list) -> list[Path]:
    """What under a tensorboard/<member>/ folder is not TensorBoard's event files (links and
    other non-regular files added to ``wrong``)."""
    foreign = []
    for folder, dirs, names in os.walk(member):  # links to folders are listed, not followed
        for name in sorted(dirs + names):
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                wrong.append(door.refusal(path, mode))
            elif stat.S_ISREG(mode) and not TENSORBOARD_FILE.fullmatch(name):
                foreign.append(path)
    return foreign


def _foreign_in_ray_train(member: Path) -> list[Path]:
    """What under train/<member>/ neither Ray Train nor the worker writes (hidden names are
    Ray's markers): anything but checkpoint folders of the worker's files and Ray's record."""
    foreign = []
    for path in sorted(member.iterdir()):
        if path.name.startswith(".") or RAY_TRAIN_FILES.fullmatch(path.name):
            continue
        if not (RAY_CHECKPOINT.fullmatch(path.name) and _is_real_dir(path)):
            foreign.append(path)
            continue
        for inner in sorted(path.iterdir()):
            if not (inner.name.startswith(".") or CHECKPOINT_FILES.fullmatch(inner.name)):
                foreign.append(inner)
    return foreign


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def restore_interrupted_overwrite(run_dir: str | os.PathLike, log=logger.info) -> bool:
    """Settle what an ``--overwrite`` stopped part way left beside ``run_dir``.

    The run it set aside (``.<name>.replaced``) is put back if the new run had not finished,
    and dropped if it had; the new run's config.json records which run it ``replaces``, so
    nothing is moved that this tool cannot prove it set aside (RunFolderError instead).
    Returns whether a run was put back."""
    run_dir = Path(run_dir)
    aside = _aside(run_dir)
    if not (aside.exists() or aside.is_symlink()):
        return False
    old = read_marker(aside) if _is_real_dir(aside) else None
    if old is None or not isinstance(old.get("instance"), str):
        raise RunFolderError(
            f"{aside} is in the way: it is not a run this tool set aside; move it away"
        )
    if run_dir.exists() or run_dir.is_symlink():
        new = read_marker(run_dir) if _is_real_dir(run_dir) else None
        empty = _is_real_dir(run_dir) and not any(run_dir.iterdir())
        if not empty and (new is None or new.get("replaces") != old["instance"]):
            raise RunFolderError(
                f"{aside} holds a run set aside by an --overwrite that "
                f"{run_dir} does not record; move one of them away"
            )
        if not empty and is_complete(run_dir):  # the new run had finished: drop the old one
            shutil.rmtree(aside)
            log(f"removed {aside}: the --overwrite that set it aside had finished")
            return False
        shutil.rmtree(run_dir)
    os.replace(aside, run_dir)
    log(f"restored {run_dir}: an earlier --overwrite stopped before its new run finished")
    return True


def check(run_dir: str | os.PathLike, identity: dict, overwrite: bool = False) -> str:
    """Decide what a run of ``identity`` may do with ``run_dir``, changing nothing.

    Returns ``"new"``, ``"resume"`` (an earlier run with the same identity stopped part way:
    its finished members and checkpoints are reused) or ``"overwrite"``. Raises
    :class:`RunFolderError` for a complete run without ``overwrite``, a run started with other
    settings (each difference named, old -> new), and a folder this tool did not make.
    """
    from committee.rundir.identity import differences

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"output {run_dir} exists and is not a folder; expected a folder path")
    if not run_dir.is_dir() or all(is_temporary(p.name) for p in run_dir.iterdir()):
        return "new"  # (a killed run's temporary files alone: prepare removes them)
    config = read_marker(run_dir)
    if config is None and os.path.lexists(run_dir / CONFIG):
        try:
            read_json(run_dir / CONFIG)
        except RunFolderError:
            raise  # not a regular file: named as such (door.open_regular)
        except (OSError, ValueError) as exc:
            raise RunFolderError(
                f"{run_dir / CONFIG} is unreadable ({type(exc).__name__}); "
                f"this folder cannot be resumed or overwritten safely: move it "
                f"away or choose another --run-name"
            ) from None
    if config is None:
        raise RunFolderError(
            f"output {run_dir} is a non-empty folder without this tool's "
            f"{CONFIG}; expected a new folder or one a committee run made "
            f"(choose another --run-name)"
        )
    if not isinstance(config.get("instance"), str) or not re.fullmatch(
        r"[0-9a-f]{32}", config["instance"]
    ):
        raise RunFolderError(
            f"{run_dir / CONFIG}: field 'instance' is "
            f"{config.get('instance')!r}; expected the 32 hex digits this tool "
            f"writes (move the folder away or choose another --run-name)"
        )
    if overwrite:
        if run_dir.is_symlink():
            raise RunFolderError(
                f"--overwrite refused: {run_dir} is a symbolic link; expected "
                f"a run folder (remove the link or choose another --run-name)"
            )
        foreign, wrong = survey(run_dir)
        if foreign:
            names = [str(p.relative_to(run_dir)) for p in foreign[:5]]
            raise RunFolderError(
                f"--overwrite refused: {run_dir} holds files this tool never "
                f"writes ({', '.join(names)}); move them or choose "
                f"another --run-name"
            )
        if wrong is not None:
            raise wrong
        return "overwrite"
    if is_complete(run_dir):
        raise RunFolderError(
            f"run folder {run_dir} already holds a complete run; pass "
            f"--overwrite to replace it or choose another --run-name"
        )
    old = config.get("identity")
    changed = (
        ["it records no settings (made by an earlier version)"]
        if not isinstance(old, dict)
        else differences(old, identity)
    )
    if changed:
        raise RunFolderError(
            f"run folder {run_dir} holds an unfinished run with other settings "
            f"({'; '.join(changed)}); rerun with its settings to resume it, "
            f"pass --overwrite to start it over, or choose another --run-name"
        )
    wrong = survey(run_dir)[1]
    if wrong is not None:  # the tool would write through it: refused before any work
        raise wrong
    return "resume"


def prepare(run_dir: str | os.PathLike, mode: str, config: dict) -> dict:
    """Make ``run_dir`` ready for a run that :func:`check` allowed as ``mode``; mark it
    incomplete, after removing the temporary files a killed run left
    (:func:`remove_temporaries`). ``config`` (JSON data) is written to ``config.json`` with
    the tool's marker; a resumed run keeps its first ``instance`` id. ``"overwrite"`` sets
    the old run aside (:func:`finish` drops it, :func:`abandon` puts it back). Returns the
    config written."""
    run_dir = Path(run_dir)
    config = {"tool": TOOL, "instance": uuid.uuid4().hex, **config}
    if mode != "overwrite" and run_dir.is_dir():  # (an overwritten run's go with it)
        removed = remove_temporaries(run_dir)
        if removed:
            logger.info(
                f"removed {plural(len(removed), 'temporary file')} a killed run left in {run_dir}"
            )
    if mode == "resume":
        config["instance"] = (read_marker(run_dir) or {}).get("instance", config["instance"])
    elif mode == "overwrite":
        config["replaces"] = (read_marker(run_dir) or {}).get("instance")
        os.replace(run_dir, _aside(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, config, run_dir)  # first: the marker that makes the folder ours
    write_text(run_dir / INCOMPLETE, "this run has not finished; rerun it to resume\n", run_dir)
    return config


def finish(run_dir: str | os.PathLike) -> None:
    """Mark the run complete and drop the run an ``--overwrite`` replaced."""
    run_dir = Path(run_dir)
    mark_complete(run_dir)
    shutil.rmtree(_aside(run_dir), ignore_errors=True)


def abandon(run_dir: str | os.PathLike, mode: str) -> bool:
    """After a failed ``--overwrite``: remove the unfinished new run and put the old one back.
    Returns whether the old run was restored (other modes keep the folder to resume)."""
    if mode != "overwrite":
        return False
    return restore_interrupted_overwrite(run_dir, log=lambda message: None)


def mark_complete(run_dir: str | os.PathLike) -> None:
    (Path(run_dir) / INCOMPLETE).unlink(missing_ok=True)


class RunLock:
    """An exclusive lock on one run folder, held for a whole run (``with RunLock(run_dir):``).

    The lock is ``flock`` on ``.<name>.lock`` beside the folder, holding the owner's PID: a
    second run of the same folder fails at once naming it, and a lock whose process died is
    free (the kernel drops it). The file is removed on release; a process that locked a file
    just removed retries on the new one. (filelock truncates the file when it tries to
    lock it, so it cannot keep the holder's PID; hence fcntl here.)
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir.parent / f".{self.run_dir.name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderError(
                    f"run folder {self.run_dir} is in use by another run "
                    f"(process {holder}); wait for it to end or choose "
                    f"another --run-name"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it between our open and lock: take the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        """The lock file, made if missing, opened without following a link and without
        blocking on a FIFO: anything but a regular file there raises RunFolderError (a link
        would have the PID written through it)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError:
            mode = os.lstat(self.path).st_mode
            if stat.S_ISREG(mode):
                raise
            raise door.refusal(self.path, mode) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise door.refusal(self.path, mode)
        return fd

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def check_writable(folder: str | os.PathLike, option: str = "--output") -> None:
    """Raise a clear error unless files can be created under ``folder`` (or its nearest
    parent); ``option`` names where the folder came from."""
    folder = Path(folder).resolve()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{option} folder {folder} is not writable ({probe} does not accept "
            f"new files); expected a writable location"
        )
