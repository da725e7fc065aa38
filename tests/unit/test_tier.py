"""The unit tier itself: what it refuses."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_heavy_packages_are_unimportable_when_only_the_unit_tier_runs(request):
    if not getattr(request.config, "unit_blocked", False):
        pytest.skip("other tiers were collected too, so TensorFlow and Ray may be imported")
    for name in ("tensorflow", "keras", "ray", "jax"):
        assert name not in sys.modules
        with pytest.raises(ImportError, match="not importable in the unit tier"):
            __import__(name)


def test_a_subprocess_is_refused():
    with pytest.raises(AssertionError, match="started a subprocess"):
        subprocess.run(["true"], check=False)
