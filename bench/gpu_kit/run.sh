#!/usr/bin/env bash
# Figures on the GPU node, after install.sh (docs/gpu-kit.md). Run from anywhere; it works in
# the checkout the kit folder sits in (REPO=... to change). One line of figures per step:
#   (a) committee run --backend jax --preset seed, full data, 20 epochs max: wall time from
#       start-up, per member epochs, s/epoch and accuracy (from the run's results.json)
#   (b) the same three models in plain Keras (JAX) one after another in one process
#       (bench/bench_seed.py --plain-keras-only), and the ratio of wall times (a)/(b)
#   (c) committee run --backend jax --preset strong --member-minutes $STRONG_MINUTES (default 4)
#   (d) committee predict of the test images (IDX .gz) with (a)'s run, through Ray Data: wall
#       time, and agreement with the run's own test predictions
#
#   FASHION_MNIST_DIR=/data/fashion-mnist bash .kit/run.sh
#
# Environment: FASHION_MNIST_DIR (required: the four .gz files), KIT_STEPS (default "a b c d"),
# STRONG_MINUTES (4), STEP_TIMEOUT (590 s per step), KIT_EXTRA (options added to all three
# commands, e.g. "--limit-train 6000 --epochs 2" for a quick try), PYTHON, KIT_SITE (as install.sh),
# KIT_WORK (run folders; default a new temporary folder), KIT_LOGS (each step's log and
# figures.txt; default $OUT where set, else KIT_WORK). Exit status 1 if a step failed.
set -uo pipefail
KIT=$(cd "$(dirname "$0")" && pwd)
REPO=${REPO:-$(cd "$KIT/.." && pwd)}
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=/opt/torch/.venv/bin/python3
    [[ -x $PYTHON ]] || PYTHON=python3
fi
SITE=${KIT_SITE:-$KIT/site}
die() { echo "run.sh: FAIL: $*" >&2; exit 1; }
[[ -d $SITE/ray && -d $SITE/keras ]] || die "no kit installed in $SITE (run install.sh first)"
[[ -n ${FASHION_MNIST_DIR:-} && -d ${FASHION_MNIST_DIR:-} ]] \
    || die "FASHION_MNIST_DIR='${FASHION_MNIST_DIR:-}' is not a folder (the four Fashion-MNIST .gz files)"
[[ -f $REPO/bench/bench_seed.py ]] || die "$REPO is not this project's checkout (set REPO=...)"
export KERAS_BACKEND=jax PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
# Three JAX processes share one GPU in (a) and (c): none may take 75% of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
WORK=${KIT_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-kit-XXXXXX")}
LOGS=${KIT_LOGS:-${OUT:-$WORK}}
LIMIT=${STEP_TIMEOUT:-590}
MINUTES=${STRONG_MINUTES:-4}
STEPS=" ${KIT_STEPS:-a b c d} "
read -r -a EXTRA <<< "${KIT_EXTRA:-}"
mkdir -p "$WORK" "$LOGS"
cd "$REPO" || die "cannot enter $REPO"

status=0 RC=0 WALL=0 WALL_A=
now() { date +%s%N; }
step() {  # LOG COMMAND...: runs it under the time limit; sets RC and WALL (s, from start-up)
    local log=$1 t0
    shift
    t0=$(now)
    timeout --kill-after=30 "$LIMIT" "$@" >"$log" 2>&1
    RC=$?
    WALL=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
}
report() {  # LABEL LOG FIGURES-ARGS...: the figures' line, or one line saying what failed
    local label=$1 log=$2 line why
    shift 2
    if (( RC != 0 )) || ! line=$("$PYTHON" "$KIT/figures.py" "$@" 2>>"$log"); then
        why="exit $RC after $WALL s"
        (( RC == 124 || RC == 137 )) && why="stopped at the ${LIMIT} s limit"
        line="$label: FAILED ($why): $(grep -v '^[[:space:]]*$' "$log" | tail -n1 | cut -c1-300) (log: $log)"
        status=1
    fi
    echo "$line" | tee -a "$LOGS/figures.txt"
}
fresh() { [[ -e $WORK/$1 ]] && echo --overwrite; }

if [[ $STEPS == *" a "* ]]; then
    label="(a) committee run --backend jax --preset seed"
    step "$LOGS/a-seed-ray.log" "$PYTHON" -m committee run --backend jax --preset seed \
        --data-dir "$FASHION_MNIST_DIR" --output "$WORK" --run-name seed-jax $(fresh seed-jax) "${EXTRA[@]}"
    (( RC == 0 )) && WALL_A=$WALL
    report "$label" "$LOGS/a-seed-ray.log" run "$label" "$WORK/seed-jax" "$WALL"
fi
if [[ $STEPS == *" b "* ]]; then
    label="(b) plain Keras (jax), seed, one after another"
    step "$LOGS/b-seed-plain.log" "$PYTHON" bench/bench_seed.py --plain-keras-only \
        --result-file "$WORK/plain-seed.json" --data-dir "$FASHION_MNIST_DIR" "${EXTRA[@]}"
    report "$label" "$LOGS/b-seed-plain.log" plain "$label" "$WORK/plain-seed.json" "$WALL" $WALL_A
fi
if [[ $STEPS == *" c "* ]]; then
    label="(c) committee run --backend jax --preset strong --member-minutes $MINUTES"
    step "$LOGS/c-strong-ray.log" "$PYTHON" -m committee run --backend jax --preset strong \
        --member-minutes "$MINUTES" --data-dir "$FASHION_MNIST_DIR" --output "$WORK" \
        --run-name strong-jax $(fresh strong-jax) "${EXTRA[@]}"
    report "$label" "$LOGS/c-strong-ray.log" run "$label" "$WORK/strong-jax" "$WALL"
fi
if [[ $STEPS == *" d "* ]]; then
    label="(d) committee predict of the 10,000 test images with (a)'s run"
    step "$LOGS/d-predict.log" "$PYTHON" -m committee predict "$WORK/seed-jax" \
        "$FASHION_MNIST_DIR/t10k-images-idx3-ubyte.gz" --output "$WORK/predict-test.parquet"
    report "$label" "$LOGS/d-predict.log" predict "$label" "$WORK/predict-test.parquet" "$WALL" \
        "$WORK/seed-jax"
fi
exit $status
