"""What produced a run: package versions, the code's git commit, the driver's machine."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "ray",
    "tensorflow",
    "keras",
    "jax",
    "jaxlib",
    "numpy",
    "scikit-learn",
    "pyarrow",
    "matplotlib",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def code_version(folder: Path | None = None) -> dict:
    """``{"git_commit", "git_dirty"}`` of the git checkout holding this package (``folder``,
    default: the package's own): HEAD's commit and whether tracked files differ from it. Both
    None when the package is not the top of a git checkout (an installed copy) or git is
    missing. Never raises."""
    folder = Path(folder or Path(__file__).resolve().parents[1])  # the committee package
    unknown = {"git_commit": None, "git_dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # A site-packages copy inside some other repository must not report that repository.
    if top is None or Path(top).resolve() != folder.parent.resolve():
        return unknown
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def machine_info() -> dict:
    """The driver's machine: CPU model and platform (each member's own is in training)."""
    from committee.training.device import cpu_model

    return {"cpu": cpu_model(), "platform": platform.platform()}
