"""A run's identity: everything that determines its figures (seeds: members.seeds).

A run folder records its identity when it is created (``config.json``, key ``identity``) and
each finished member records its own (``members/<name>.json``). A rerun of the same folder
resumes only if its identity is the same (:func:`differences` names what is not), and a
finished member is reused only if its own identity is unchanged, so stored probabilities are
never scored against another split, seed or set of hyper-parameters. Each member's seed in
the identity comes from :func:`committee.members.seeds.member_seed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from committee.members.seeds import member_seed
from committee.members.spec import SPEC_FIELDS_ADDED_LATER, MemberSpec

FORMAT = 1  # bumped when the identity's fields change meaning


def member_identity(
    spec: MemberSpec, seed: int, data: Mapping[str, Any], time_budget_s: float | None
) -> dict[str, Any]:
    """What determines one member's weights and probabilities: its resolved spec (overrides
    applied; ``expected_params`` left out, it is documentation), its seed, the data and split
    (``data``: see :func:`run_identity`) and its time budget in seconds (None: no budget).
    A field added later (members.spec.SPEC_FIELDS_ADDED_LATER) is left out at the value that
    trains as before it existed, so identities recorded before it still match."""
    later = SPEC_FIELDS_ADDED_LATER
    fields = {
        k: v
        for k, v in spec.to_dict().items()
        if k != "expected_params" and not (k in later and v == later[k])
    }
    return {"spec": fields, "seed": seed, "data": dict(data), "time_budget_s": time_budget_s}


def run_identity(
    *,
    kind: str,
    preset: str,
    specs: list[MemberSpec],
    seed: int,
    split: str,
    val_fraction: float,
    limit_train: int | None,
    data_sha256: Mapping[str, str],
    time_budget_s: float | None,
    search: Mapping[str, Any] | None = None,
    backend: str = "tensorflow",
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything that determines a run's figures, as plain JSON data.

    ``kind``: "run" or "tune"; ``data_sha256``: the SHA-256 of each IDX file used;
    ``time_budget_s``: each member's budget in seconds (None: the ceilings are trained);
    ``search``: a search's own settings (samples, scheduler, budget), for ``tune``;
    ``backend``: Keras' backend the members train on (its numerics and random streams differ);
    ``config``: the content of ``committee run --config`` (member -> settings), recorded as
    given (absent without one, so identities recorded before the option still match).
    """
    data = {
        "split": split,
        "val_fraction": val_fraction,
        "limit_train": limit_train,
        "sha256": dict(sorted(data_sha256.items())),
    }
    identity = {
        "format": FORMAT,
        "kind": kind,
        "preset": preset,
        "seed": seed,
        "backend": backend,
        "data": data,
        "members": {
            s.name: member_identity(s, member_seed(seed, preset, s.name), data, time_budget_s)
            for s in specs
        },
    }
    if search is not None:
        identity["search"] = dict(search)
    if config is not None:
        identity["config"] = dict(config)
    return _plain(identity)


def _plain(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(obj))


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``field: old -> new`` lines for every leaf that differs (sorted by path).

    Members present on one side only read ``members: model1,model2 -> model1``.
    """
    out: list[str] = []
    old_members, new_members = old.get("members", {}), new.get("members", {})
    if list(old_members) != list(new_members):
        out.append(
            f"members: {','.join(old_members) or '(none)'} -> {','.join(new_members) or '(none)'}"
        )
    _diff(
        _plain({k: v for k, v in old.items() if k != "members"}),
        _plain({k: v for k, v in new.items() if k != "members"}),
        "",
        out,
    )
    for name in old_members:
        if name in new_members:
            _diff(
                _spelled_out(old_members[name]),
                _spelled_out(new_members[name]),
                f"{name}.",
                out,
                skip=("data",),
            )  # the run's data is compared once, above
    return out


def _spelled_out(member: Mapping[str, Any]) -> Any:
    """A member's identity with the later fields it leaves out at their values put back."""
    member = _plain(member)
    if isinstance(member, dict) and isinstance(member.get("spec"), dict):
        member["spec"] = {**SPEC_FIELDS_ADDED_LATER, **member["spec"]}
    return member


def _diff(old: Any, new: Any, path: str, out: list[str], skip: tuple[str, ...] = ()) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key in skip:
                continue
            _diff(old.get(key, "(absent)"), new.get(key, "(absent)"), f"{path}{key}.", out)
        return
    if old != new:
        field = path.rstrip(".").replace("spec.", "")
        out.append(f"{field}: {_show(old)} -> {_show(new)}")


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
