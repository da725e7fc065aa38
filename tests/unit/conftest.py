"""The unit tier runs with TensorFlow, Keras, JAX and Ray made unimportable and with no
subprocess, so a test here that reaches for them fails at once instead of taking minutes.

The block is on when only unit tests are collected (``pytest tests/unit``, as .ci/run does);
a run of every tier imports them for the other tiers and leaves it off.
"""

from __future__ import annotations

import importlib.abc
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("tensorflow", "keras", "jax", "jaxlib", "ray", "torch")
UNIT = Path(__file__).resolve().parent


class Unimportable(importlib.abc.MetaPathFinder):
    """Refuses to import the HEAVY packages (first on sys.meta_path)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} is not importable in the unit tier (tests/unit)")
        return None


def _only_unit(config) -> bool:
    args = [Path(a.split("::")[0]).resolve() for a in config.args] or [Path.cwd()]
    return all(a == UNIT or UNIT in a.parents for a in args)


def pytest_configure(config):
    if _only_unit(config):
        already = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
        assert not already, f"imported before the unit tier started: {already[:5]}"
        sys.meta_path.insert(0, Unimportable())
        config.unit_blocked = True


@pytest.fixture(autouse=True)
def no_subprocess(monkeypatch):
    """A unit test starts no process (the keras and ray tiers do)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test started a subprocess: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
