"""A non-editable install (as the GPU kit and a cluster's setup do) ships every subpackage, and
its command line works from outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def test_a_non_editable_install_ships_every_subpackage_and_runs(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(
        ROOT / "committee", source / "committee", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    shipped = {p.parent.relative_to(site) for p in (site / "committee").rglob("__init__.py")}
    expected = {p.parent.relative_to(ROOT) for p in (ROOT / "committee").rglob("__init__.py")}
    assert shipped == expected and len(expected) > 1

    env = {**os.environ, "PYTHONPATH": str(site)}  # before the editable checkout on sys.path
    where = subprocess.run(
        [sys.executable, "-c", "import committee.app.cli as c; print(c.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)
    for command, expected in (
        ([str(site / "bin" / "committee"), "--help"], "{run,tune,report,predict,export,submit}"),
        ([sys.executable, "-m", "committee", "run", "--help"], "--preset"),
    ):
        proc = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert expected in proc.stdout
