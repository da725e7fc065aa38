"""Shared fixtures, and each test marked with its tier (the folder it is in).

Tiers, run in this order by .ci/run: ``unit`` (no TensorFlow, Keras, JAX or Ray, no
subprocess: seconds), ``keras`` (real Keras models and subprocesses, no Ray), ``ray`` (real
local Ray clusters). The data comes from ../shared/data/fashion-mnist (no internet here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import SHARED_DATA, RayHead, run_cli

from committee import log

TIERS = ("unit", "keras", "ray")

os.environ.setdefault("FASHION_MNIST_DIR", str(SHARED_DATA))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
log.setup()  # the lines the entry points would show, for the tests that call inside them


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert SHARED_DATA.is_dir(), f"the shared dataset is expected at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def dataset(data_dir):
    from committee.data import fashion_mnist as data

    return data.load(data_dir)


@pytest.fixture
def data_copy(tmp_path, data_dir) -> Path:
    """A writable copy of the four official files."""
    target = tmp_path / "fmnist"
    target.mkdir()
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        shutil.copy(data_dir / name, target / name)
    return target


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """``(run_dir, proc, seconds)``: one small finished run shared by the modules that read a
    run folder (test_run_integration, test_run_jax, test_predict; a test that changes it
    works on a copy). The seed's three members on 2,000 images (1,600 train / 400
    validation), a 2-epoch ceiling under a 0.06-second budget so that every member plans (and
    trains) 1 epoch, trained on the JAX backend when JAX is installed (the test extras install
    it), so that predicting it under TensorFlow also checks that members move between
    backends. Made once per test run: under pytest-xdist the first process to ask makes it,
    under a file lock, and the others read it."""
    import importlib.util

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the processes of one run share the parent
        root = root.parent
    out, record = root / "shared-run", root / "shared-run.json"
    with FileLock(str(root / "shared-run.lock")):
        if not record.is_file():
            backend = "jax" if importlib.util.find_spec("jax") else "tensorflow"
            started = time.time()
            proc = run_cli(
                "run",
                "--backend",
                backend,
                "--limit-train",
                "2000",
                "--epochs",
                "2",
                "--member-minutes",
                "0.001",
                "--output",
                str(out),
                "--run-name",
                "small",
            )
            assert proc.returncode == 0, proc.stderr[-4000:]
            record.write_text(
                json.dumps(
                    {
                        "args": proc.args,
                        "stdout": proc.stdout,
                        "stderr": proc.stderr,
                        "seconds": time.time() - started,
                    }
                )
            )
    saved = json.loads(record.read_text())
    proc = subprocess.CompletedProcess(saved["args"], 0, saved["stdout"], saved["stderr"])
    return out / "small", proc, saved["seconds"]


@pytest.fixture(scope="session")
def small_run(shared_run) -> Path:
    """The shared run's folder (:func:`shared_run`)."""
    return shared_run[0]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    head = RayHead(tmp_path_factory.mktemp("head"))
    yield head
    head.stop()


def pytest_itemcollected(item):
    """Mark each test with its tier, the folder under tests/ it is in (``-m unit`` etc.)."""
    tier = next((t for t in TIERS if f"{os.sep}{t}{os.sep}" in str(item.path)), None)
    if tier is not None:
        item.add_marker(getattr(pytest.mark, tier))
