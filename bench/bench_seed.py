"""Benchmark: a preset through the Ray job vs the same three models in plain Keras.

Both sides get the same data split, epochs, batch sizes, seeds, callbacks and
steps_per_execution; each runs in its own fresh Python process, timed from outside
(so import and start-up costs count). Prints both wall times, their ratio and both sets of
test accuracies (members and the mean-rule committee).

    python bench/bench_seed.py                      # full data, 20 epochs max (~30 min on 2 cores)
    python bench/bench_seed.py --epochs 1 --limit-train 6000   # a quick look
    python bench/bench_seed.py --preset strong --plain-only    # no Ray: e.g. a GPU machine
                                                               # with Keras on JAX
    KERAS_BACKEND=jax python bench/bench_seed.py    # both sides on JAX (the Ray job gets
                                                    # --backend jax)

Both sides use Keras' backend as KERAS_BACKEND names it (default TensorFlow); the Ray job is
given ``--backend`` only when KERAS_BACKEND names another.

This is a benchmark that prints figures, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_keras(args) -> None:
    """The baseline: the members one after another, in this process, no Ray."""
    sys.path.insert(0, str(ROOT))
    from committee import log
    from committee.data import fashion_mnist as data
    from committee.ensemble import scoring
    from committee.members import spec as members
    from committee.training.loop import train_member

    log.setup()
    from committee.training.prediction import predict_proba

    dataset = data.load(args.data_dir)
    split = data.split_train_val(dataset.x_train, dataset.y_train, limit=args.limit_train)
    x_test, y_test = data.preprocess(dataset.x_test), dataset.y_test.astype("int64")
    test, val, epochs, seconds = {}, {}, {}, {}
    for index, spec in enumerate(members.select_members(args.preset, epochs=args.epochs)):
        start = time.perf_counter()
        model, state = train_member(
            spec,
            split.x_train,
            split.y_train,
            split.x_val,
            split.y_val,
            seed=args.seed + index,
            steps_per_execution=args.steps_per_execution,
            verbose=2,
        )
        seconds[spec.name] = time.perf_counter() - start
        test[spec.name] = predict_proba(model, x_test, tta=spec.tta)
        val[spec.name] = predict_proba(model, split.x_val, tta=spec.tta)
        epochs[spec.name] = state.epoch
    results, _ = scoring.score_committee(test, y_test, val, split.y_val)
    summary = {
        "members": {n: m["accuracy"] for n, m in results["members"].items()},
        "committee": {r: m["accuracy"] for r, m in results["committee"].items()},
        "epochs": epochs,
        "train_s": seconds,
    }
    if args.result_file:
        json.dump(summary, open(args.result_file, "w"))
    else:
        import keras

        print(f"\nplain Keras ({keras.config.backend()} backend), preset {args.preset}")
        for name, acc in summary["members"].items():
            print(
                f"{name:<22} test accuracy {acc:.4f}   {epochs[name]} epochs in "
                f"{seconds[name]:.1f} s"
            )
        for rule, acc in summary["committee"].items():
            print(f"{'committee ' + rule:<22} test accuracy {acc:.4f}")


def timed(cmd: list[str], log_path: Path) -> float:
    start = time.perf_counter()
    with open(log_path, "w") as log:
        subprocess.run(
            cmd,
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="seed", help="seed (default) or strong")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps-per-execution", type=int, default=32)
    parser.add_argument("--workdir", default=None, help="where runs and logs go (default: temp)")
    parser.add_argument(
        "--plain-only",
        action="store_true",
        help="only the plain-Keras side (no Ray), printing its figures",
    )
    parser.add_argument("--plain-keras-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_keras_only or args.plain_only:
        return plain_keras(args)

    work = Path(args.workdir or tempfile.mkdtemp(prefix=f"bench-{args.preset}-"))
    work.mkdir(parents=True, exist_ok=True)
    common = [
        f"--preset={args.preset}",
        f"--seed={args.seed}",
        f"--steps-per-execution={args.steps_per_execution}",
    ]
    common += [f"--epochs={args.epochs}"] if args.epochs else []
    common += [f"--limit-train={args.limit_train}"] if args.limit_train else []
    common += [f"--data-dir={args.data_dir}"] if args.data_dir else []

    keras_json = work / "plain_keras.json"
    t_keras = timed(
        [sys.executable, __file__, "--plain-keras-only", f"--result-file={keras_json}", *common],
        work / "plain_keras.log",
    )
    print(f"plain Keras, sequential: {t_keras:.1f} s", flush=True)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    backend_opt = [] if backend == "tensorflow" else [f"--backend={backend}"]
    t_ray = timed(
        [
            sys.executable,
            "-m",
            "committee",
            "run",
            "--output",
            str(work),
            "--run-name",
            "ray",
            *backend_opt,
            *common,
        ],
        work / "ray_job.log",
    )
    print(f"Ray job, concurrent:     {t_ray:.1f} s", flush=True)

    plain = json.loads(keras_json.read_text())
    ray_results = json.loads((work / "ray" / "results.json").read_text())
    print(
        f"\nwall time ratio Ray / plain Keras ({backend}): {t_ray / t_keras:.3f}  (target <= 1.10)"
    )
    print(f"\n{'test accuracy':<22}{'plain Keras':>12}{'Ray job':>12}   epochs (keras / ray)")
    for name, acc in plain["members"].items():
        ray_acc = ray_results["members"][name]["accuracy"]
        ray_epochs = ray_results["training"][name]["epochs_run"]
        print(f"{name:<22}{acc:>12.4f}{ray_acc:>12.4f}   {plain['epochs'][name]} / {ray_epochs}")
    for rule, acc in plain["committee"].items():
        print(
            f"{'committee ' + rule:<22}{acc:>12.4f}"
            f"{ray_results['committee'][rule]['accuracy']:>12.4f}"
        )
    print(f"\nlogs and run folder: {work}")


if __name__ == "__main__":
    main()
