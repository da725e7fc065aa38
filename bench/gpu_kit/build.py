#!/usr/bin/env python3
"""Build the GPU kit: the wheels a borrowed GPU node lacks to run this project on Keras' JAX
backend, in one folder with install.sh and run.sh (docs/gpu-kit.md).

Run it where a package index is reachable, with the project's venv python, so that every
package the venv has is packed at the version the tests ran against:

    .venv/bin/python bench/gpu_kit/build.py                    # .kit/ for the node: cp312
    .venv/bin/python bench/gpu_kit/build.py --local --out /tmp/kit   # this interpreter (tests)

The list is computed, not kept: the project's own wheel (``pip wheel --no-deps``), then the
Requires-Dist of every wheel, recursively, with markers evaluated for the target and extras
followed only where a requirement names them (``ray[data,default,train,tune]``), less what the
node already has (node_packages.txt beside this file) and less EXCLUDE below: tensorflow (the
node runs Keras on JAX) and virtualenv (only for Ray's pip runtime environments, which need an
index). Each wheel comes from ``pip download --only-binary=:all: --no-deps`` for the target's
Python and platforms. Ray's wheel is rewritten without ``ray/jars/ray_dist.jar`` (Java workers
only; 31 MiB of the wheel) and the dashboard's JavaScript source maps, their RECORD lines
removed with them.

The folder gets the wheels, install.sh, run.sh, figures.py, node_requirements.txt (what the
wheels ask of the node's own packages, which install.sh checks there) and kit.json (the
manifest). The build fails, in one line and exit status 1, if the folder is over 64 MiB: the
most one call to the GPU machine can carry.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

try:
    from packaging import tags as pkg_tags
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # an interpreter with pip but without packaging: pip's own copy
    from pip._vendor.packaging import tags as pkg_tags  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LIMIT = 64 * 2**20  # bytes: the most one call to the GPU machine carries
NODE_PYTHON = "3.12.3"  # /opt/torch/.venv/bin/python3 on the GPU node
NODE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
EXCLUDE = {  # never packed, nor what they alone need
    "tensorflow": "the node trains on Keras' JAX backend",
    "virtualenv": "only Ray's pip/uv runtime environments use it, and they need a package "
    "index, which the node has not (5.5 MiB with its dependencies)",
}
STRIP = {  # files left out of a wheel: (path prefixes, path suffixes)
    "ray": (
        ("ray/jars/",),  # ray_dist.jar: Java workers only, 31 MiB of the wheel
        (".js.map",),
    ),  # the dashboard's JavaScript source maps: debugging only, 1.5 MiB
}
KIT_FILES = ("install.sh", "run.sh", "figures.py")  # copied from beside this file


class BuildError(Exception):
    """A build that cannot go on: one line for the user."""


def read_node_packages(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(line))
    return names


def expand_platforms(platforms: list[str]) -> list[str]:
    """Each manylinux tag with every older glibc it implies (as pip reads ``--platform``)."""
    legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
    out: list[str] = []
    for plat in platforms:
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", plat)
        m_legacy = re.fullmatch(r"(manylinux2014|manylinux2010|manylinux1)_(\w+)", plat)
        if m_legacy:
            glibc = {v: k for k, v in legacy.items()}[m_legacy.group(1)]
            m = re.fullmatch(
                r"manylinux_(\d+)_(\d+)_(\w+)",
                f"manylinux_{glibc[0]}_{glibc[1]}_{m_legacy.group(2)}",
            )
        if not m:
            out.append(plat)
            continue
        major, minor, arch = int(m.group(1)), int(m.group(2)), m.group(3)
        for mi in range(minor, 4, -1):
            out.append(f"manylinux_{major}_{mi}_{arch}")
            if (major, mi) in legacy:
                out.append(f"{legacy[major, mi]}_{arch}")
    return list(dict.fromkeys(out))


class Target:
    """The interpreter and platform the kit is for: tags for wheels, an environment for markers."""

    def __init__(self, python_version: str, platforms: list[str]):
        parts = python_version.split(".")
        if len(parts) < 2 or not all(p.isdigit() for p in parts):
            raise BuildError(f"--python-version {python_version!r}: expected e.g. 3.12 or 3.12.3")
        self.python_version = python_version
        self.py = (int(parts[0]), int(parts[1]))
        self.platforms = platforms
        expanded = expand_platforms(platforms)
        interpreter = f"cp{self.py[0]}{self.py[1]}"
        self.tags = set(pkg_tags.cpython_tags(python_version=self.py, platforms=expanded))
        self.tags |= set(
            pkg_tags.compatible_tags(
                python_version=self.py, interpreter=interpreter, platforms=expanded
            )
        )
        machine = platforms[0].rsplit("_", 1)[-1] if platforms else "x86_64"
        machine = "x86_64" if platforms and platforms[0].endswith("x86_64") else machine
        full = python_version if len(parts) >= 3 else f"{python_version}.0"
        self.environment = {
            "python_version": f"{self.py[0]}.{self.py[1]}",
            "python_full_version": full,
            "implementation_name": "cpython",
            "implementation_version": full,
            "platform_python_implementation": "CPython",
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": machine,
            "platform_release": "",
            "platform_version": "",
        }

    def wheel_fits(self, filename: str) -> bool:
        try:
            _, _, _, wheel_tags = parse_wheel_filename(filename)
        except Exception:  # noqa: BLE001 - any unparsable name is not a wheel for us
            return False
        return bool(set(wheel_tags) & self.tags)

    def describe(self) -> str:
        return f"cp{self.py[0]}{self.py[1]} ({self.python_version}), {', '.join(self.platforms)}"


def wheel_metadata(path: Path):
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if not names:
            raise BuildError(f"{path.name}: not a wheel (no .dist-info/METADATA)")
        return email.parser.BytesParser().parsebytes(z.read(names[0]))


def requirements_of(path: Path, extras: set[str], target: Target) -> list[Requirement]:
    """The wheel's Requires-Dist that apply on the target, for its base and ``extras``."""
    out = []
    for text in wheel_metadata(path).get_all("Requires-Dist") or []:
        req = Requirement(text)
        if req.marker is None or any(
            req.marker.evaluate({**target.environment, "extra": e}) for e in {"", *extras}
        ):
            req.marker = None
            out.append(req)
    return out


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )


def last_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [
        ln.strip()
        for ln in (proc.stderr + proc.stdout).splitlines()
        if ln.strip() and not ln.startswith("WARNING: Location")
    ]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1]


class Resolver:
    """Wheels for the target, one ``pip download --no-deps`` per round of new names."""

    def __init__(
        self, target: Target, cache: Path, node: set[str], exclude: set[str], local_pins: bool
    ):
        self.target, self.cache, self.node, self.exclude = target, cache, node, exclude
        self.local_pins = local_pins
        self.wheels: dict[str, Path] = {}  # canonical name -> wheel in the cache
        self.why: dict[str, list[str]] = {}  # canonical name -> who asked for it
        self.extras_done: dict[str, set[str]] = {}
        self.node_requirements: dict[str, list[tuple[str, str]]] = {}  # name -> (req, by)
        self.excluded: dict[str, list[str]] = {}

    def _cached(self, name: str, spec: SpecifierSet) -> Path | None:
        """A wheel already in the cache for ``name`` that an exact pin in ``spec`` names."""
        pins = [s.version for s in spec if s.operator == "=="]
        if len(pins) != 1 or "*" in pins[0]:
            return None
        for path in self.cache.glob("*.whl"):
            wname, version, _, _ = parse_wheel_filename(path.name)
            if (
                canonicalize_name(wname) == name
                and version == Version(pins[0])
                and self.target.wheel_fits(path.name)
            ):
                return path
        return None

    def _download(self, wanted: dict[str, str]) -> dict[str, Path]:
        """``{name: requirement string}`` -> ``{name: wheel}``, by pip, into the cache."""
        args = [
            "download",
            "--only-binary=:all:",
            "--no-deps",
            "--progress-bar",
            "off",
            "--python-version",
            self.target.python_version,
            "--implementation",
            "cp",
            *[f"--platform={p}" for p in self.target.platforms],
            "-d",
            str(self.cache),
            *wanted.values(),
        ]
        proc = run_pip(args)
        if proc.returncode != 0:
            raise BuildError(f"pip download {' '.join(wanted.values())}: {last_error_line(proc)}")
        found: dict[str, Path] = {}
        for match in re.finditer(r"(?:Saved|File was already downloaded) (\S+\.whl)", proc.stdout):
            path = Path(match.group(1))
            path = path if path.is_absolute() else Path.cwd() / path
            found[canonicalize_name(parse_wheel_filename(path.name)[0])] = path
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise BuildError(f"pip download gave no wheel for {', '.join(missing)}")
        return found

    def _fetch(self, wanted: dict[str, SpecifierSet]) -> None:
        pinned: dict[str, str] = {}
        loose: dict[str, str] = {}
        for name, spec in wanted.items():
            local = installed_version(name) if self.local_pins else None
            if local and spec.contains(local, prereleases=True):
                cached = self._cached(name, SpecifierSet(f"=={local}"))
                if cached:
                    self.wheels[name] = cached
                else:
                    pinned[name] = f"{name}=={local}"
            else:
                loose[name] = f"{name}{spec}"
        if pinned:
            try:
                self.wheels.update(self._download(pinned))
            except BuildError:  # e.g. this version has no wheel for the target: one by one
                for name, text in pinned.items():
                    try:
                        self.wheels.update(self._download({name: text}))
                    except BuildError as error:
                        print(
                            f"note: {text} for {self.target.describe()}: {error}; "
                            f"taking the newest {name}{wanted[name]} instead",
                            flush=True,
                        )
                        loose[name] = f"{name}{wanted[name]}"
        if loose:
            self.wheels.update(self._download(loose))

    def resolve(self, roots: list[tuple[Requirement, str]]) -> None:
        pending = roots
        while pending:
            wanted: dict[str, SpecifierSet] = {}
            follow: list[tuple[str, set[str]]] = []
            for req, by in pending:
                name = canonicalize_name(req.name)
                if name in self.exclude:
                    self.excluded.setdefault(name, []).append(by)
                    continue
                if name in self.node:
                    self.node_requirements.setdefault(name, []).append((str(req), by))
                    continue
                self.why.setdefault(name, [])
                if by not in self.why[name]:
                    self.why[name].append(by)
                if name in self.wheels:
                    version = parse_wheel_filename(self.wheels[name].name)[1]
                    if not req.specifier.contains(version, prereleases=True):
                        raise BuildError(
                            f"{by} needs {req}, but {name} {version} was chosen "
                            f"for {', '.join(self.why[name][:-1])}"
                        )
                else:
                    wanted[name] = wanted.get(name, SpecifierSet()) & req.specifier
                follow.append((name, {canonicalize_name(e) for e in req.extras}))
            self._fetch(wanted)
            pending = []
            for name, extras in follow:
                done = self.extras_done.get(name)
                new = extras if done is None else extras - done
                if done is not None and not new:
                    continue
                self.extras_done[name] = (done or set()) | extras
                wheel = self.wheels[name]
                version = parse_wheel_filename(wheel.name)[1]
                seen = (
                    set()
                    if done is None
                    else {str(r) for r in requirements_of(wheel, done, self.target)}
                )
                for req in requirements_of(wheel, extras, self.target):
                    if str(req) not in seen:  # only what new extras add
                        pending.append((req, f"{name} {version}"))


def build_project_wheel(dest: Path) -> Path:
    """The project as a wheel (``pip wheel --no-deps``), built from a copy of its source so
    the checkout gets no build/ or egg-info folder."""
    with tempfile.TemporaryDirectory(prefix="kit-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg"):
            if (ROOT / name).exists():
                shutil.copy2(ROOT / name, src / name)
        shutil.copytree(
            ROOT / "committee",
            src / "committee",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        setuptools = installed_version("setuptools")
        isolated = not (
            setuptools and Version(setuptools) >= Version("68") and installed_version("wheel")
        )
        out = Path(tmp) / "wheel"
        proc = run_pip(
            [
                "wheel",
                "--no-deps",
                "-q",
                "-w",
                str(out),
                str(src),
                *([] if isolated else ["--no-build-isolation"]),
            ]
        )
        if proc.returncode != 0:
            raise BuildError(f"pip wheel of the project: {last_error_line(proc)}")
        built = list(out.glob("*.whl"))
        if len(built) != 1:
            raise BuildError(f"pip wheel of the project gave {len(built)} wheels, expected 1")
        target = dest / built[0].name
        shutil.copy2(built[0], target)
        return target


def strip_wheel(
    source: Path, dest: Path, rule: tuple[tuple[str, ...], tuple[str, ...]]
) -> list[str]:
    """Copy wheel ``source`` to ``dest`` without the files whose paths start with one of
    ``rule[0]`` or end with one of ``rule[1]``, and without their RECORD lines. The other
    entries are copied compressed as they are (no recompression); the RECORD is rewritten.
    Returns the paths left out."""
    prefixes, suffixes = rule

    def dropped(path: str) -> bool:
        return path.startswith(prefixes) or path.endswith(suffixes)

    removed: list[str] = []
    with zipfile.ZipFile(source) as zin:
        record_name = next(
            n for n in zin.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD")
        )
        keep = []
        for info in zin.infolist():
            if dropped(info.filename):
                removed.append(info.filename)
            elif info.filename != record_name:
                keep.append(info)
        record = zin.read(record_name).decode()
        lines = [ln for ln in record.splitlines() if ln and not dropped(ln.rsplit(",", 2)[0])]
        tmp = dest.with_name(dest.name + ".part")
        with open(source, "rb") as raw, zipfile.ZipFile(tmp, "w") as zout:
            for info in keep:
                if info.flag_bits & 0x08:  # a data descriptor follows the data: recompress
                    zout.writestr(info, zin.read(info), compress_type=info.compress_type)
                    continue
                raw.seek(info.header_offset)
                header = raw.read(30)
                if header[:4] != b"PK\x03\x04":
                    raise BuildError(f"{source.name}: bad local header for {info.filename}")
                name_len, extra_len = (
                    int.from_bytes(header[26:28], "little"),
                    int.from_bytes(header[28:30], "little"),
                )
                body = raw.read(name_len + extra_len + info.compress_size)
                copied = zipfile.ZipInfo(info.filename, info.date_time)
                for field in (
                    "compress_type",
                    "CRC",
                    "compress_size",
                    "file_size",
                    "external_attr",
                    "create_system",
                    "create_version",
                    "extract_version",
                    "flag_bits",
                    "internal_attr",
                    "extra",
                ):
                    setattr(copied, field, getattr(info, field))
                copied.header_offset = zout.fp.tell()
                zout.fp.write(header + body)
                zout.filelist.append(copied)
                zout.NameToInfo[copied.filename] = copied
                zout.start_dir = zout.fp.tell()
            zout._didModify = True
            zout.writestr(
                zipfile.ZipInfo(record_name, (2020, 1, 1, 0, 0, 0)),
                "\n".join(lines) + "\n",
                compress_type=zipfile.ZIP_DEFLATED,
            )
        with zipfile.ZipFile(tmp) as check:  # every entry readable where it says it is
            bad = check.testzip() if os.environ.get("KIT_TESTZIP") else None
            if bad or len(check.namelist()) != len(keep) + 1:
                raise BuildError(f"{dest.name}: the rewritten wheel does not read back ({bad})")
        tmp.replace(dest)
    return removed


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_out(out: Path) -> None:
    """Make ``out`` an empty folder: new, empty, or a kit an earlier build wrote (its kit.json
    beside nothing but what a build writes), emptied. Anything else is refused, never deleted."""
    if out.exists():
        entries = list(out.iterdir())
        ours = {"kit.json", "node_requirements.txt", "site", *KIT_FILES}
        foreign = [e.name for e in entries if e.name not in ours and not e.name.endswith(".whl")]
        if entries and (not (out / "kit.json").is_file() or foreign or out.is_symlink()):
            raise BuildError(
                f"--out {out}: exists, is not empty and is not a kit this script "
                f"built{f' (it holds {foreign[0]})' if foreign else ''}; choose "
                "another folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / ".kit",
        help="the kit's folder, emptied first (default: .kit/)",
    )
    parser.add_argument(
        "--python-version", default=None, help=f"target Python (default {NODE_PYTHON}, the node's)"
    )
    parser.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        help=f"target platform tag, repeatable (default: {' '.join(NODE_PLATFORMS)})",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="target this interpreter's Python version (e.g. to test the kit)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "committee-gpu-kit",
        help="where downloaded wheels are kept between builds (default ~/.cache/committee-gpu-kit)",
    )
    parser.add_argument(
        "--node-packages",
        type=Path,
        default=HERE / "node_packages.txt",
        help="what the node already has, one name a line",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        help=f"a distribution never to pack, repeatable, besides {' and '.join(EXCLUDE)}",
    )
    parser.add_argument(
        "--no-local-pins",
        action="store_true",
        help="take the newest allowed version of each package instead of the "
        "version installed beside this interpreter",
    )
    args = parser.parse_args(argv)

    python_version = args.python_version or (
        "{}.{}.{}".format(*sys.version_info[:3]) if args.local else NODE_PYTHON
    )
    try:
        target = Target(python_version, args.platforms or list(NODE_PLATFORMS))
        args.cache.mkdir(parents=True, exist_ok=True)
        out = args.out.resolve()
        prepare_out(out)
        print(f"building the GPU kit for {target.describe()} into {out}", flush=True)
        project = build_project_wheel(out)
        resolver = Resolver(
            target,
            args.cache.resolve(),
            read_node_packages(args.node_packages),
            {canonicalize_name(e) for e in [*EXCLUDE, *args.exclude]},
            local_pins=not args.no_local_pins,
        )
        project_name = canonicalize_name(parse_wheel_filename(project.name)[0])
        resolver.resolve([(req, project_name) for req in requirements_of(project, set(), target)])
        stripped: dict[str, list[str]] = {}
        for name, wheel in sorted(resolver.wheels.items()):
            if name in STRIP:
                stripped[wheel.name] = strip_wheel(wheel, out / wheel.name, STRIP[name])
            else:
                shutil.copy2(wheel, out / wheel.name)
        for name in KIT_FILES:
            shutil.copy2(HERE / name, out / name)
        node_lines = list(
            dict.fromkeys(
                f"{req:<40} # {by}"
                for name in sorted(resolver.node_requirements)
                for req, by in resolver.node_requirements[name]
            )
        )
        (out / "node_requirements.txt").write_text(
            "# What the kit's wheels ask of the node's own packages (install.sh checks them)\n"
            + "\n".join(node_lines)
            + "\n"
        )
        wheels = sorted(out.glob("*.whl"))
        manifest = {
            "target": {"python_version": target.python_version, "platforms": target.platforms},
            "wheels": [
                {
                    "file": w.name,
                    "bytes": w.stat().st_size,
                    "sha256": sha256(w),
                    "for": resolver.why.get(
                        canonicalize_name(parse_wheel_filename(w.name)[0]), ["(the project)"]
                    ),
                }
                for w in wheels
            ],
            "stripped": stripped,
            "node_requirements": {
                n: [r for r, _ in v] for n, v in sorted(resolver.node_requirements.items())
            },
            "excluded": {
                name: {
                    "asked_for_by": list(dict.fromkeys(by)),
                    "why": EXCLUDE.get(name, "--exclude"),
                }
                for name, by in sorted(resolver.excluded.items())
            },
        }
        (out / "kit.json").write_text(json.dumps(manifest, indent=1) + "\n")
    except BuildError as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1

    for w in wheels:
        print(f"  {w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    for name, paths in stripped.items():
        print(
            f"  ({name}: left out {len(paths)} files: {', '.join(paths[:3])}"
            f"{', ...' if len(paths) > 3 else ''})"
        )
    for name, by in sorted(resolver.excluded.items()):
        print(
            f"  (not packed: {name}, asked for by {', '.join(dict.fromkeys(by))}: "
            f"{EXCLUDE.get(name, '--exclude')})"
        )
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(
        f"kit: {len(wheels)} wheels, {total / 2**20:.2f} MiB in all ({total} bytes; "
        f"limit 64 MiB) in {out}",
        flush=True,
    )
    if total > LIMIT:
        print(
            f"build.py: FAIL: the kit is {total / 2**20:.2f} MiB, over the 64 MiB one call "
            "to the GPU machine can carry",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
