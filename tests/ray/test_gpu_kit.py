"""The GPU kit (bench/gpu_kit, docs/gpu-kit.md), built for this interpreter instead of the node's.

It must fit the 64 MiB one call to the GPU machine carries, leave out Ray's ray_dist.jar and
what the node already has, and install with its own install.sh into a fresh virtualenv that
holds only a stand-in for the node's packages (those of bench/gpu_kit/node_packages.txt and
what they need, linked from this environment). Then ray, keras (on JAX) and committee import
from the kit's folder, and a private local Ray (the project's own, dashboard and all) runs a
task whose worker imports them too.

Needs a package index for ``pip download``: skipped, saying so, where none answers. Wheels are
kept in <tmp>/committee-gpu-kit-cache, so after the first run the build downloads nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]


KIT_SRC = ROOT / "bench" / "gpu_kit"


CACHE = Path(tempfile.gettempdir()) / "committee-gpu-kit-cache"


LIMIT = 64 * 2**20


def node_names() -> set[str]:
    return {
        canonicalize_name(line.split("#", 1)[0].strip())
        for line in (KIT_SRC / "node_packages.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    }


def index_unreachable() -> str | None:
    """Why pip cannot download from a package index here, or None if it can."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-cache-dir",
                "--timeout",
                "10",
                "--retries",
                "0",
                "--disable-pip-version-check",
                "-d",
                tmp,
                "namex",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if proc.returncode == 0:
        return None
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"pip exit status {proc.returncode}"


def link_node_stand_in(target: Path) -> int:
    """Symlink into ``target`` every file of the distributions of this environment that the
    node has (node_packages.txt) and of what they require, as one site folder. Returns the
    number of distributions linked."""
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    todo, chosen = [n for n in node_names() if n in installed], set()
    while todo:
        name = todo.pop()
        if name in chosen:
            continue
        chosen.add(name)
        for text in installed[name].requires or []:
            req = Requirement(text)
            dep = canonicalize_name(req.name)
            if (
                dep in installed
                and dep not in chosen
                and (req.marker is None or req.marker.evaluate({"extra": ""}))
            ):
                todo.append(dep)
    for name in chosen:
        dist = installed[name]
        base = Path(dist.locate_file("")).resolve()
        for file in dist.files or []:
            if "__pycache__" in file.parts or ".." in file.parts:
                continue
            source, link = base / file, target / file
            if link.exists() or link.is_symlink() or not source.exists():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
    return len(chosen)


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    why = index_unreachable()
    if why:
        pytest.skip(
            f"no package index answers pip download here ({why}); the kit's build needs one"
        )
    out = tmp_path_factory.mktemp("gpu-kit") / "kit"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(KIT_SRC / "build.py"),
            "--local",
            "--out",
            str(out),
            "--cache",
            str(CACHE),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"kit built in {time.monotonic() - started:.1f} s:\n{proc.stdout[-400:]}")
    return out


def test_kit_contents(kit):
    total = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())
    assert total <= LIMIT, f"the kit is {total / 2**20:.2f} MiB, over 64 MiB"
    for name in ("install.sh", "run.sh", "figures.py", "node_requirements.txt", "kit.json"):
        assert (kit / name).is_file(), name
    wheels = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in kit.glob("*.whl")}
    assert {"ray", "keras", "namex", "optree", "pydantic", "fashion-committee"} <= set(wheels)
    assert not set(wheels) & node_names(), "the kit packs what the node already has"
    assert "tensorflow" not in wheels and "virtualenv" not in wheels
    with zipfile.ZipFile(wheels["ray"]) as ray_wheel:
        names = ray_wheel.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        assert not [n for n in names if n.startswith("ray/jars/")]
        assert "ray_dist.jar" not in ray_wheel.read(record).decode()
        assert "ray/_raylet.so" in names or any(n.startswith("ray/_raylet") for n in names)
    manifest = json.loads((kit / "kit.json").read_text())
    assert manifest["stripped"] and manifest["excluded"]["tensorflow"]
    assert {w["file"] for w in manifest["wheels"]} == {w.name for w in wheels.values()}


def test_kit_installs_and_runs_in_a_node_like_venv(kit, tmp_path):
    venv = tmp_path / "node-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    stand_in = tmp_path / "node-site"
    assert link_node_stand_in(stand_in) >= 10
    (venv_site / "node-stand-in.pth").write_text(f"{stand_in}\n")
    for module in ("ray", "keras", "committee", "pydantic", "tensorflow"):  # not on the node
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"],
            capture_output=True,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        assert probe.returncode != 0, f"{module} imports in the stand-in without the kit"

    site = tmp_path / "site"
    env = {**os.environ, "PYTHON": str(python), "KIT_SITE": str(site), "KERAS_BACKEND": "jax"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["bash", str(kit / "install.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kit installed:"), proc.stdout
    assert "ray 2." in lines[0] and "(jax)" in lines[0], lines[0]
    assert not (site / "ray" / "jars").exists()

    script = f"""
import os, sys
from pathlib import Path
site = Path({str(site)!r})
import committee, jsonschema, keras, namex, optree, pydantic, ray
for module in (committee, jsonschema, keras, namex, optree, pydantic, ray):
    assert site in Path(module.__file__).resolve().parents, module.__file__
assert keras.config.backend() == "jax", keras.config.backend()
assert "tensorflow" not in sys.modules
from committee.distributed import cluster
cluster.connect(num_cpus=1)

@ray.remote
def where():
    import committee, keras
    return keras.config.backend(), committee.__file__, ray.__file__

backend, committee_file, ray_file = ray.get(where.remote(), timeout=120)
ray.shutdown()
assert backend == "jax", backend
assert site in Path(committee_file).parents and site in Path(ray_file).parents
print("ok", ray.__version__, keras.__version__)
"""
    env = {**env, "PYTHONPATH": str(site), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    proc = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]
    proc = subprocess.run(
        [str(python), "-m", "committee", "run", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "--member-minutes" in proc.stdout, proc.stderr[-2000:]


def test_the_output_folder_is_emptied_only_when_it_is_an_earlier_kit(tmp_path):
    """--out names a folder the build empties: only one holding an earlier kit (its kit.json
    and what a build writes) is emptied; any other non-empty folder is refused untouched."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "kit_build", ROOT / "bench" / "gpu_kit" / "build.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, files in {
        "wheels": ["old-download.whl", "thesis.tex"],
        "one-wheel": ["some-1.0-py3-none-any.whl"],
        "not-a-kit": ["notes.txt"],
        "kit-and-more": ["kit.json", "a.whl", "notes.txt"],
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        for file in files:
            (folder / file).write_text("keep me")
        with pytest.raises(build.BuildError, match="is not a kit this script built"):
            build.prepare_out(folder)
        assert sorted(p.name for p in folder.iterdir()) == sorted(files), name
    kit = tmp_path / "kit"
    kit.mkdir()
    for file in ("kit.json", "install.sh", "run.sh", "ray-2.60.0-cp311-none-any.whl"):
        (kit / file).write_text("old")
    build.prepare_out(kit)
    assert kit.is_dir() and not any(kit.iterdir())
