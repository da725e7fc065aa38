"""Install the declared floors of the light dependencies in a fresh venv and run the tests
that need neither TensorFlow nor Ray against them.

    python bench/check_floors.py [--venv /tmp/floors] [--keep]

A floor below the API the code calls (scikit-learn 1.6's brier_score_loss had no ``labels``)
fails here in a minute instead of at scoring after a whole run. TensorFlow, Keras and Ray are
left out: they are pinned (==2.21.*, ==2.60.*), too large to reinstall for a check, and
tests/unit/test_dependencies.py checks our floors against ray's own. Needs network (or a wheel
mirror) and ~400 MB in the venv's folder.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LIGHT = (
    "numpy",
    "scikit-learn",
    "scipy",
    "pyarrow",
    "pandas",
    "matplotlib",
    "pillow",
    "tqdm",
    "pydantic",
)
TESTS = (
    "tests/unit/test_scoring.py",
    "tests/unit/test_diagnostics.py",
    "tests/unit/test_report_untrusted.py",
    "tests/unit/test_runfolder.py",
    "tests/unit/test_dependencies.py",
)


def floors() -> list[str]:
    """``name==floor`` of each light runtime dependency and of the test extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = []
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(text)
        if req.name.lower() not in LIGHT + ("pytest", "pytest-timeout", "pyyaml"):
            continue
        low = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        if not low:
            raise SystemExit(f"{req} has no floor; expected one (>=, == or ~=)")
        wanted.append(f"{req.name}=={low[0]}")
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="venv folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the venv afterwards")
    args = parser.parse_args()
    venv = args.venv or Path(tempfile.mkdtemp(prefix="floors-"))
    python = venv / "bin" / "python"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pins = floors()
        print("installing", " ".join(pins), flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins], check=True)
        # A bare environment: nothing of the caller's venv may leak into the check.
        env = {"PYTHONPATH": str(ROOT), "HOME": str(venv), "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, env=env
        ).returncode
    finally:
        if not args.keep and args.venv is None:
            shutil.rmtree(venv, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
