"""A finished member's saved files are untrusted: reused only whole and of the same identity
(no Ray: the files are made here)."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np

from committee.rundir import member_files
from committee.training.state import TrainState

IDENTITY = {"seed": 0, "spec": {"name": "m"}}


def test_a_saved_member_loads_back_with_the_same_record(tmp_path):
    """save_member and load_finished_member agree on every saved field (no Ray)."""
    from committee.members import spec as members

    model = tmp_path / "final.keras"
    with zipfile.ZipFile(model, "w") as archive:
        for part in ("config.json", "model.weights.h5"):
            archive.writestr(part, "{}")
    rng = np.random.default_rng(0)
    probs = {"val": rng.dirichlet(np.ones(10), 4), "test": rng.dirichlet(np.ones(10), 5)}
    state = TrainState(
        epoch=3,
        history={"loss": [1.0, 0.7, 0.5]},
        resumed_at=[2],
        started_at=10.0,
        finished_at=20.0,
        epochs_planned=3,
        precision="float32",
        device={"cpu": "x", "gpus": []},
    )
    spec = dataclasses.replace(members.SEED_PRESET[0], name="m", epochs=3)
    saved = member_files.save_member(tmp_path, spec, model, state, probs, IDENTITY)
    loaded = member_files.load_finished_member(tmp_path, "m", IDENTITY, 4, 5)
    assert loaded is not None and loaded.reused and not saved.reused
    assert loaded.to_record() == saved.to_record()
    assert loaded.training_entry()["train_s"] == 10.0
    info = json.loads((tmp_path / "members" / "m.json").read_text())
    assert set(info) == {"identity", "spec", *member_files.SAVED_FIELDS}
