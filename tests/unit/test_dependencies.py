"""pyproject.toml declares what committee/ imports, at floors that really work.

An install at a declared floor must run the code: a floor below the API the code calls fails
only at scoring, after all the training. Checked here without installing anything:

* every third-party module imported anywhere in committee/ is declared (or provided by a
  declared requirement, or an optional Keras backend);
* each floor is at least the version whose API the code needs (:data:`API_NEEDS`, the reason
  beside each) and at least what ray 2.60's own extras require;
* nothing only the tests use is a runtime dependency.

bench/check_floors.py installs exactly the floors of the light packages in a fresh venv and
runs the scoring, diagnostics and report tests against them.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


ROOT = Path(__file__).resolve().parents[2]


PACKAGE = ROOT / "committee"


RAY_EXTRAS = ("data", "default", "train", "tune")


# import name -> distribution name, where they differ
DISTRIBUTIONS = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml"}


# Imported only when Keras runs on that backend (training._has_gpu); not dependencies.
OPTIONAL = {"jax", "torch"}


# Imported, and installed by a declared requirement: module -> (requirement, extra).
PROVIDED = {
    "grpc": ("ray", "default"),  # ray's own generated gRPC stubs need ray's grpcio
    "tensorboardX": ("ray", "tune"),
}  # tensorboard.EpochScalars (non-TF backends)


# The oldest version each distribution works at here, and why.
API_NEEDS = {
    "scikit-learn": ("1.7", "diagnostics: brier_score_loss(labels=...) on (n, k) probabilities"),
    "scipy": ("1.11.2", "fusion.fit_weights; the first with wheels for Python 3.12"),
    "numpy": ("1.26", "tensorflow 2.21; the first with wheels for Python 3.12"),
    "pyarrow": ("17", "ray[data,train,tune] 2.60 require pyarrow>=17"),
    "pandas": ("2.2.3", "ray[data] 2.60 requires pandas>=2.2.3"),
    "pillow": ("10.0.1", "inputs: Image.Resampling (9.1); the first with Python 3.12 wheels"),
    "pydantic": ("2.5", "ray[default] 2.60 requires pydantic>=2.5"),
}


TEST_ONLY = {"pyyaml", "pytest", "pytest-timeout", "psutil", "jax"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in _project()["dependencies"]]
    return {r.name.lower(): r for r in reqs}


def _floor(req: Requirement) -> Version | None:
    """The lowest version ``req`` allows (its >=, == or ~= bound), else None."""
    bounds = [
        Version(s.version.replace(".*", ""))
        for s in req.specifier
        if s.operator in (">=", "==", "~=")
    ]
    return max(bounds) if bounds else None


def _imported_modules() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in committee/ -> files importing them."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):  # every subpackage
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "committee" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_imported_module_is_declared():
    declared = _declared()
    missing = {}
    for module, files in _imported_modules().items():
        if module in OPTIONAL:
            continue
        if module in PROVIDED:
            name, extra = PROVIDED[module]
            assert extra in declared[name].extras, f"{module}: needs {name}[{extra}]"
            continue
        if DISTRIBUTIONS.get(module, module).lower() not in declared:
            missing[module] = sorted(files)
    assert not missing, f"imported by committee/ but not declared in pyproject.toml: {missing}"


def test_the_scanner_sees_function_level_imports():
    """fusion.py imports scipy inside a function: the scan must find it."""
    assert "fusion.py" in _imported_modules()["scipy"]


@pytest.mark.parametrize("name", sorted(API_NEEDS))
def test_floor_meets_the_api_the_code_needs(name):
    need, why = API_NEEDS[name]
    req = _declared().get(name)
    assert req is not None, f"{name} is not declared ({why})"
    floor = _floor(req)
    assert floor is not None and floor >= Version(need), (
        f"pyproject.toml allows {req}; expected a floor >= {need}: {why}"
    )


def test_floors_meet_rays_own():
    """Every distribution both we and ray[data,default,train,tune] require: our floor is not
    below ray's (a lower one lets a resolver pick a version that ray then refuses)."""
    try:
        ray_reqs = [Requirement(r) for r in metadata.requires("ray") or []]
    except metadata.PackageNotFoundError:  # bench/check_floors.py's venv has no Ray
        pytest.skip("ray is not installed")
    declared = _declared()
    low = []
    for req in ray_reqs:
        name = req.name.lower()
        if name not in declared or req.marker is None:
            continue
        if not any(req.marker.evaluate({"extra": extra}) for extra in RAY_EXTRAS):
            continue
        ours, theirs = _floor(declared[name]), _floor(req)
        if theirs is not None and (ours is None or ours < theirs):
            low.append(f"{declared[name]} < ray's {req}")
    assert not low, low


def test_test_only_packages_are_not_runtime_dependencies():
    runtime = set(_declared())
    assert not runtime & TEST_ONLY, sorted(runtime & TEST_ONLY)
    test_extra = {Requirement(r).name.lower() for r in _project()["optional-dependencies"]["test"]}
    assert "pyyaml" in test_extra  # tests/ray/test_cluster_files.py reads YAML


def test_installed_sklearn_has_the_api_diagnostics_calls():
    """The API behind the scikit-learn floor, on the installed version."""
    import numpy as np
    from sklearn.metrics import brier_score_loss

    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    assert brier_score_loss([0, 1], proba, labels=[0, 1, 2]) == pytest.approx(
        np.mean([0.04 + 0.01 + 0.01, 0.04 + 0.09 + 0.01])
    )
