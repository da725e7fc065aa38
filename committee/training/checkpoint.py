"""A training checkpoint: a folder with ``model.keras`` (weights and optimizer state) and
``state.json`` (:class:`~committee.training.state.TrainState`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

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


def check_keras_archive(path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` is a whole Keras 3 ``.keras`` archive: a zip whose
    CRCs check out and which holds the model's config and weights (cheap; loading it, in
    safe mode, is the full check)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            missing = [n for n in KERAS_ARCHIVE_PARTS if n not in archive.namelist()]
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path} is not a .keras (zip) file ({type(exc).__name__})") from None
    if missing or bad:
        raise ValueError(
            f"{path} is not a whole .keras file ("
            + (f"no {missing[0]}" if missing else f"{bad} is damaged")
            + ")"
        )


def load_checkpoint(folder: str | os.PathLike, max_epochs: int = MAX_EPOCHS):
    """Return ``(model, state)``; the model is loaded in Keras' safe mode, with its optimizer.
    Raises ValueError for a state out of range for a member of ``max_epochs`` epochs
    (TrainState.from_dict) before the model is loaded."""
    folder = Path(folder)
    state = TrainState.from_dict(json.loads((folder / STATE_FILE).read_text()), max_epochs)
    import keras  # after the state: a damaged one is refused without loading Keras

    model = keras.models.load_model(folder / MODEL_FILE, safe_mode=True)
    return model, state
