"""A training checkpoint: a folder with ``model.keras`` (weights and optimizer state) and
``state.json`` (:class:`~committee.training.state.TrainState`).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict
from pathlib import Path

from committee.errors import CheckpointError
from committee.members.spec import MAX_EPOCHS
from committee.training.state import TrainState

MODEL_FILE, STATE_FILE = "model.keras", "state.json"


def save_checkpoint(folder: str | os.PathLike, model, state: TrainState) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    (folder / STATE_FILE).write_text(json.dumps(asdict(state)))
    return folder


KERAS_ARCHIVE_PARTS = ("config.json", "model.weights.h5")  # what Keras 3's .keras zip holds
# A member's .keras file, packed or unpacked (Keras stores its parts uncompressed); the
# presets' are under 30 MB.
MAX_KERAS_BYTES = 1 << 30
# Keras reads config.json whole and parses it; the presets' are under 20 KB. A 4 MB .keras
# whose config.json inflated to 1 GiB cost a predict actor 2.85 GB.
MAX_KERAS_CONFIG_BYTES = 4 << 20


def check_keras_archive(path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` is a whole Keras 3 ``.keras`` archive: a zip whose
    CRCs check out, which holds the model's config and weights, and whose config.json unpacks
    to at most ``MAX_KERAS_CONFIG_BYTES`` and all its parts to at most ``MAX_KERAS_BYTES``
    (cheap; loading it, in safe mode, is the full check). The sizes are checked before
    anything else is unpacked, in bounded memory (:func:`_unpacked_size`)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            missing = [n for n in KERAS_ARCHIVE_PARTS if n not in archive.namelist()]
            _check_unpacked_sizes(path, archive.infolist())
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path} is not a .keras (zip) file ({type(exc).__name__})") from None
    if missing or bad:
        raise ValueError(
            f"{path} is not a whole .keras file ("
            + (f"no {missing[0]}" if missing else f"{bad} is damaged")
            + ")"
        )


def _check_unpacked_sizes(path, parts) -> None:
    """Raise ValueError naming ``path`` when config.json or all of ``parts`` (the zip's
    ZipInfo entries) unpack to more than the caps."""
    total = 0
    for part in parts:
        config = part.filename == "config.json"
        limit = MAX_KERAS_CONFIG_BYTES if config else MAX_KERAS_BYTES - total
        size = _unpacked_size(path, part, limit)
        if config and size > limit:
            raise ValueError(
                f"{path}: its config.json unpacks to {_more_than(size, limit)} bytes; "
                f"expected at most {MAX_KERAS_CONFIG_BYTES:,} (a model's config is a few KB)"
            )
        total += size
        if total > MAX_KERAS_BYTES:
            raise ValueError(
                f"{path}: its parts unpack to more than {MAX_KERAS_BYTES:,} bytes (counted "
                f"up to {part.filename}); expected at most {MAX_KERAS_BYTES:,} for a .keras file"
            )


def _more_than(size: int, limit: int) -> str:
    return f"more than {limit:,}" if size > limit else f"{size:,}"


def _unpacked_size(path, part, limit: int) -> int:
    """The most bytes reading ``part`` (a ZipInfo of the zip at ``path``) can produce, or
    ``limit`` + 1 once it passes ``limit``. Not the directory's word: Python's zipfile (which
    Keras reads with) truncates a part to its announced size only after inflating a whole
    read, so a part announcing 10 bytes can still inflate to 2 GiB in memory. A stored part
    reads as what it stores; a deflated one is inflated here, 1 MiB at a time. Raises
    ValueError naming ``path`` for another compression (Keras writes its parts stored)."""
    import zipfile
    import zlib

    if part.compress_type == zipfile.ZIP_STORED:
        return max(part.file_size, part.compress_size)
    if part.compress_type != zipfile.ZIP_DEFLATED:
        raise ValueError(
            f"{path}: part {part.filename} is compressed with zip method "
            f"{part.compress_type}; expected parts stored or deflated, as Keras writes them"
        )
    with open(path, "rb") as f:
        f.seek(part.header_offset)
        local = f.read(30)  # the local file header; its name and extra field follow
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {part.filename}")
        f.seek(int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"), 1)
        inflate, produced, left = zlib.decompressobj(-zlib.MAX_WBITS), 0, part.compress_size
        while produced <= limit and (left > 0 or inflate.unconsumed_tail):
            data = inflate.unconsumed_tail
            if not data:
                data = f.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
            try:
                produced += len(inflate.decompress(data, 1 << 20))
            except zlib.error as exc:
                raise zipfile.BadZipFile(str(exc)) from None
    return min(produced, limit + 1)


def load_checkpoint(folder: str | os.PathLike, max_epochs: int = MAX_EPOCHS):
    """Return ``(model, state)``; the model is loaded in Keras' safe mode, with its optimizer.

    Raises :class:`~committee.errors.CheckpointError` naming the file that did not load
    (``.file``, ``.cause``): a ``state.json`` missing, not a regular file, not JSON or out of
    range for a member of ``max_epochs`` epochs (TrainState.from_dict), checked first; a
    ``model.keras`` that is not a whole archive within the size caps
    (:func:`check_keras_archive`), checked before Keras is imported; or one Keras refuses."""
    folder = Path(folder)
    try:
        _check_regular(folder / STATE_FILE)
        state = TrainState.from_dict(json.loads((folder / STATE_FILE).read_text()), max_epochs)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise CheckpointError(STATE_FILE, exc) from exc
    try:
        # a resume checkpoint is as untrusted as a finished model: capped before Keras unpacks
        _check_regular(folder / MODEL_FILE)
        check_keras_archive(folder / MODEL_FILE)
        import keras  # after the checks: a damaged checkpoint is refused without loading Keras

        model = keras.models.load_model(folder / MODEL_FILE, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a damaged file
        raise CheckpointError(MODEL_FILE, exc) from exc
    return model, state


def _check_regular(path: Path) -> None:
    """OSError unless ``path`` is a regular file: reading a FIFO would wait forever."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file")
