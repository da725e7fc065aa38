"""A finished member's files in the run folder, and its outcome (no Ray here).

``models/<name>.keras`` (the trained model), ``members/<name>.npz`` (its validation and test
probabilities, float ``(n, 10)`` each) and ``members/<name>.json`` (its identity, its spec and
the :data:`SAVED_FIELDS` of its :class:`MemberOutcome`). A later run of the same folder reuses
a member whose files are whole and whose identity is unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from committee.data.fashion_mnist import NUM_CLASSES
from committee.errors import one_line
from committee.log import logger
from committee.members.spec import MAX_EPOCHS, MemberSpec
from committee.rundir import folder as runfolder
from committee.training.checkpoint import check_keras_archive
from committee.training.state import TrainState

# What members/<name>.json records of a member's training, named as MemberOutcome names them
# (the TrainState field of each is the same name, but for STATE_NAMES), in the file's order.
SAVED_FIELDS = (
    "history",
    "epochs_run",
    "stopped_early",
    "started_at",
    "finished_at",
    "resumed_at",
    "epochs_planned",
    "precision",
    "device",
)
STATE_NAMES = {"epochs_run": "epoch"}  # MemberOutcome name -> TrainState name, where they differ
# The SAVED_FIELDS added after members/<name>.json was first written: older runs' files lack them.
RECORD_FIELDS_ADDED_LATER = ("epochs_planned", "precision", "device")


@dataclass
class MemberOutcome:
    name: str
    history: dict[str, list[float]]
    epochs_run: int
    stopped_early: bool
    started_at: float
    finished_at: float
    val_proba: np.ndarray
    test_proba: np.ndarray
    resumed_at: list[int]  # epoch counts at which training resumed from a checkpoint
    reused: bool = False  # finished in an earlier, interrupted run and not retrained
    epochs_planned: int | None = None  # the time budget's plan, when one applied
    seed: int | None = None
    precision: str | None = None  # the dtype policy it trained with (training.effective_precision)
    device: dict | None = None  # {"cpu": model, "gpus": [names]} of the worker it trained on

    @classmethod
    def from_state(
        cls,
        name: str,
        state: TrainState,
        probs: dict[str, np.ndarray],
        seed: int | None,
        reused: bool = False,
    ) -> MemberOutcome:
        """The outcome of a member whose training ended in ``state``; ``probs``: its
        ``"val"`` and ``"test"`` probabilities."""
        fields = {f: getattr(state, STATE_NAMES.get(f, f)) for f in SAVED_FIELDS}
        return cls(
            name=name,
            **fields,
            val_proba=probs["val"],
            test_proba=probs["test"],
            seed=seed,
            reused=reused,
        )

    def to_record(self) -> dict:
        """The :data:`SAVED_FIELDS`, as members/<name>.json holds them."""
        return {f: getattr(self, f) for f in SAVED_FIELDS}

    def training_entry(self) -> dict:
        """This member's entry in results.json's ``training`` block."""
        return {
            **self.to_record(),
            "train_s": self.finished_at - self.started_at,
            "reused": self.reused,
            "seed": self.seed,
        }


def state_of_record(record: dict, max_epochs: int = MAX_EPOCHS) -> TrainState:
    """The :data:`SAVED_FIELDS` of a members/<name>.json (untrusted) as a TrainState, checked
    as a checkpoint's state is (``max_epochs``: the member's spec's). Raises KeyError (a field
    missing) or ValueError (a field of the wrong type or out of range)."""
    return TrainState.from_dict(
        {
            STATE_NAMES.get(f, f): record.get(f) if f in RECORD_FIELDS_ADDED_LATER else record[f]
            for f in SAVED_FIELDS
        },
        max_epochs,
    )


def member_paths(run_dir: Path, name: str) -> tuple[Path, Path, Path]:
    """``(model, info, probabilities)``: the member's .keras, .json and .npz files."""
    return (
        run_dir / runfolder.MODELS / f"{name}.keras",
        run_dir / runfolder.MEMBERS / f"{name}.json",
        run_dir / runfolder.MEMBERS / f"{name}.npz",
    )


def load_finished_member(
    run_dir: Path, name: str, identity: dict, n_val: int, n_test: int
) -> MemberOutcome | None:
    """A member saved by an earlier run of this folder with the same ``identity`` (see
    identity.member_identity), or None: none saved, saved with another identity, or its files
    damaged (one warning line; the member is then predicted again from its checkpoint).
    ``n_val`` / ``n_test``: the rows its probabilities must have."""
    model_path, info_path, probs_path = member_paths(run_dir, name)
    if not (model_path.is_file() and info_path.is_file() and probs_path.is_file()):
        return None
    try:
        info = runfolder.read_json(info_path)
        if info.get("identity") != identity:
            logger.info(
                f"{name}: the member saved in {info_path} was trained with other "
                f"settings; training it again"
            )
            return None
        runfolder.door.check_regular(model_path)  # check_keras_archive opens it by path
        with runfolder.door.open_regular(probs_path) as f, np.load(f, allow_pickle=False) as probs:
            val, test = probs["val"], probs["test"]
        for part, array, rows in (("val", val, n_val), ("test", test, n_test)):
            if array.shape != (rows, NUM_CLASSES) or not np.all(np.isfinite(array)):
                raise ValueError(
                    f"'{part}' has shape {array.shape}, expected "
                    f"({rows}, {NUM_CLASSES}) "
                    f"finite probabilities"
                )
        check_keras_archive(model_path)
        state = state_of_record(info, identity["spec"].get("epochs", MAX_EPOCHS))
        if state.started_at is None or state.finished_at is None:
            raise ValueError("started_at / finished_at missing")
        return MemberOutcome.from_state(
            name, state, {"val": val, "test": test}, identity["seed"], reused=True
        )
    except Exception as exc:  # noqa: BLE001 - any damage is handled alike: predict again
        why = one_line(exc, 200, pick="first", empty="")
        logger.warning(
            f"warning: {name}: its saved files are damaged ({type(exc).__name__}: "
            f"{why}); predicting it again from its checkpoint"
        )
        return None


def save_member(
    run_dir: Path,
    spec: MemberSpec,
    model_file: Path,
    state: TrainState,
    probs: dict[str, np.ndarray],
    identity: dict,
) -> MemberOutcome:
    """Write a finished member's files (``model_file``: its final .keras) and return its
    outcome. ``identity``: the member's (identity.member_identity), recorded for reuse."""
    model_path, info_path, probs_path = member_paths(run_dir, spec.name)
    runfolder.copy_file(model_file, model_path, run_dir)
    runfolder.write_npz(probs_path, run_dir, val=probs["val"], test=probs["test"])
    state = replace(state, finished_at=state.finished_at or time.time())
    outcome = MemberOutcome.from_state(spec.name, state, probs, identity["seed"])
    runfolder.write_json(
        info_path, {"identity": identity, "spec": spec.to_dict(), **outcome.to_record()}, run_dir
    )
    return outcome
