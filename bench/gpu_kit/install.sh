#!/usr/bin/env bash
# Install the GPU kit on the air-gapped GPU node (docs/gpu-kit.md): the kit's wheels into one
# folder, no index, no dependency resolution (build.py resolved them), no byte-compiling. The
# node's own packages stay where they are; run.sh puts the folder first on PYTHONPATH.
#
#   bash .kit/install.sh                 # into .kit/site, with /opt/torch/.venv/bin/python3
#   PYTHON=python3 KIT_SITE=/scratch/site bash .kit/install.sh
#
# Prints one line: what was installed where, the versions that import, and whether the node's
# own packages meet what the wheels ask of them (node_requirements.txt). Exit status 1 if the
# install or the import fails.
set -euo pipefail
KIT=$(cd "$(dirname "$0")" && pwd)
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=/opt/torch/.venv/bin/python3
    [[ -x $PYTHON ]] || PYTHON=python3
fi
SITE=${KIT_SITE:-$KIT/site}
log=$(mktemp "${TMPDIR:-/tmp}/kit-install-XXXXXX.log")
rm -rf "$SITE"
mkdir -p "$SITE"
shopt -s nullglob
wheels=("$KIT"/*.whl)
if (( ${#wheels[@]} == 0 )); then
    echo "install.sh: FAIL: no wheels in $KIT (run bench/gpu_kit/build.py first)" >&2
    exit 1
fi
if ! "$PYTHON" -m pip install --no-index --no-deps --no-compile --disable-pip-version-check \
        --no-warn-script-location --target "$SITE" "${wheels[@]}" >"$log" 2>&1; then
    echo "install.sh: FAIL: pip install into $SITE: $(grep -m1 ERROR "$log" || tail -n1 "$log") (log: $log)" >&2
    exit 1
fi
# (from inside $SITE, so that a checkout in the current folder cannot stand in for the kit)
if ! summary=$(cd "$SITE" && KERAS_BACKEND=${KERAS_BACKEND:-jax} \
        PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" \
        "$PYTHON" - "$KIT/node_requirements.txt" "$SITE" 2>>"$log" <<'PY'
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

requirements, site = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
import committee, keras, ray  # noqa: E402  (from the kit's folder, not the node's)

for module in (ray, keras, committee):
    if site not in Path(module.__file__).resolve().parents:
        sys.exit(f"{module.__name__} imports from {module.__file__}, not from {site}")
problems = []
for line in requirements.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        problems.append(f"{req.name} missing (wanted {req})")
        continue
    if not req.specifier.contains(version, prereleases=True):
        problems.append(f"{req.name} {version} (wanted {req})")
node = ("node packages meet the kit's requirements" if not problems else
        f"{len(problems)} node package(s) off: " + "; ".join(dict.fromkeys(problems)))
print(f"ray {ray.__version__}, keras {keras.__version__} ({keras.config.backend()}), "
      f"committee {committee.__version__}; {node}")
PY
); then
    echo "install.sh: FAIL: the kit does not import from $SITE: $(tail -n1 "$log") (log: $log)" >&2
    exit 1
fi
echo "kit installed: ${#wheels[@]} wheels into $SITE for $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'); $summary"
