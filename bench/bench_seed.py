"""Benchmark: a preset through the Ray job vs the same three models in plain Keras.

Both sides get the same data split, epochs, batch sizes, seeds and callbacks; each runs in its
own fresh Python process, timed from outside (so import and start-up costs count). The plain
side is the notebook's way: the members one after another, Keras' default threads and
``--plain-steps-per-execution`` (default 1, Keras' own default, as the notebook); the Ray job
gets ``--steps-per-execution`` (default: the job's own). Prints both wall times, their ratio
and both sets of test accuracies (members and the committee's rules), then where the Ray
job's time went: each member's training time alone (plain side) and shared (Ray job), the
whole machine's CPU utilisation (CPU seconds / wall / cores, from /proc/stat every 0.5 s) on
each side, and for the Ray job the time and utilisation with 3, 2, 1 and 0 members training
(the idle tail: one member left; 0: start-up, prediction, scoring, report). The utilisation
is the machine's: run it on a quiet machine.

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
import threading
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
            steps_per_execution=args.steps_per_execution or args.plain_steps_per_execution,
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


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine so far, from /proc/stat's cpu line."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class CpuSampler(threading.Thread):
    """Samples the machine's CPU counters every ``every`` seconds: ``samples`` is a list of
    ``(unix time, busy ticks, total ticks)``."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.samples, self._done = every, [], threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.time(), *_cpu_jiffies()))
            if self._done.wait(self.every):
                self.samples.append((time.time(), *_cpu_jiffies()))
                return

    def stop(self) -> None:
        self._done.set()
        self.join()

    def utilisation(self, start: float = 0.0, end: float = float("inf")) -> tuple[float, float]:
        """``(seconds, busy fraction)`` of the sampled intervals whose middle lies in
        [start, end): CPU seconds / wall / cores."""
        seconds = busy = total = 0.0
        for (t0, b0, n0), (t1, b1, n1) in zip(self.samples, self.samples[1:]):
            if start <= (t0 + t1) / 2 < end:
                seconds, busy, total = seconds + t1 - t0, busy + b1 - b0, total + n1 - n0
        return seconds, (busy / total if total else float("nan"))


def timed(cmd: list[str], log_path: Path) -> tuple[float, CpuSampler]:
    """Wall seconds of ``cmd`` (stdout and stderr to ``log_path``), and its CPU samples."""
    sampler = CpuSampler()
    sampler.start()
    start = time.perf_counter()
    try:
        with open(log_path, "w") as log:
            subprocess.run(
                cmd,
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
    finally:
        sampler.stop()
    return time.perf_counter() - start, sampler


def where_the_time_went(plain: dict, training: dict, sampler: CpuSampler) -> None:
    """Print each member's training time alone and shared, and the Ray job's time and CPU
    utilisation by how many members were training (``training``: results.json's)."""
    cores = os.cpu_count()
    print(f"\n{'training time (s)':<22}{'alone':>12}{'shared':>12}   (plain side / Ray job)")
    for name, info in training.items():
        alone = plain["train_s"].get(name, float("nan"))
        print(f"{name:<22}{alone:>12.1f}{info['train_s']:>12.1f}   x{info['train_s'] / alone:.2f}")
    spans = [(info["started_at"], info["finished_at"]) for info in training.values()]
    begin, end = sampler.samples[0][0], sampler.samples[-1][0]
    edges = sorted({begin, end, *(t for span in spans for t in span)})
    by_count: dict[int, list[tuple[float, float]]] = {}
    for t0, t1 in zip(edges, edges[1:]):
        count = sum(1 for a, b in spans if a <= (t0 + t1) / 2 < b)
        by_count.setdefault(count, []).append((t0, t1))
    print(f"\nRay job on {cores} cores: members training, wall and CPU utilisation")
    for count in sorted(by_count, reverse=True):
        seconds = weighted = 0.0
        for t0, t1 in by_count[count]:
            s, u = sampler.utilisation(t0, t1)
            if s:
                seconds, weighted = seconds + s, weighted + s * u
        label = {0: "none (start, predict, score)", 1: "one (the idle tail)"}.get(count, str(count))
        util = weighted / seconds if seconds else float("nan")
        print(f"  {label:<30}{sum(t1 - t0 for t0, t1 in by_count[count]):>8.1f} s   {util:>6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="seed", help="seed (default) or strong")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps-per-execution", type=int, default=None, help="the Ray job's (default: its own)"
    )
    parser.add_argument(
        "--plain-steps-per-execution",
        type=int,
        default=1,
        help="the plain side's (default 1: Keras' default, as the notebook)",
    )
    parser.add_argument("--workdir", default=None, help="where runs and logs go (default: temp)")
    parser.add_argument(
        "--plain-only",
        action="store_true",
        help="only the plain-Keras side (no Ray), printing its figures",
    )
    parser.add_argument(
        "--plain-from",
        metavar="WORKDIR",
        help="reuse the plain side measured by an earlier invocation in WORKDIR (its "
        "plain_keras.json) instead of running it again: only on the same quiet machine",
    )
    parser.add_argument("--plain-keras-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_keras_only or args.plain_only:
        return plain_keras(args)

    work = Path(args.workdir or tempfile.mkdtemp(prefix=f"bench-{args.preset}-"))
    work.mkdir(parents=True, exist_ok=True)
    common = [f"--preset={args.preset}", f"--seed={args.seed}"]
    common += [f"--epochs={args.epochs}"] if args.epochs else []
    common += [f"--limit-train={args.limit_train}"] if args.limit_train else []
    common += [f"--data-dir={args.data_dir}"] if args.data_dir else []

    if args.plain_from:
        keras_json = Path(args.plain_from) / "plain_keras.json"
        plain = json.loads(keras_json.read_text())
        t_keras, keras_util = plain["wall_s"], plain["cpu_utilisation"]
        print(f"plain Keras, sequential: {t_keras:.1f} s, as measured in {args.plain_from}")
    else:
        keras_json = work / "plain_keras.json"
        t_keras, keras_cpu = timed(
            [
                sys.executable,
                __file__,
                "--plain-keras-only",
                f"--result-file={keras_json}",
                f"--steps-per-execution={args.plain_steps_per_execution}",
                *common,
            ],
            work / "plain_keras.log",
        )
        keras_util = keras_cpu.utilisation()[1]
        plain = json.loads(keras_json.read_text())
        plain.update(wall_s=t_keras, cpu_utilisation=keras_util)
        keras_json.write_text(json.dumps(plain))
    print(
        f"plain Keras, sequential: {t_keras:.1f} s (CPU utilisation {keras_util:.1%} of "
        f"{os.cpu_count()} cores)",
        flush=True,
    )
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    backend_opt = [] if backend == "tensorflow" else [f"--backend={backend}"]
    spe = (
        []
        if args.steps_per_execution is None
        else [f"--steps-per-execution={args.steps_per_execution}"]
    )
    t_ray, ray_cpu = timed(
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
            *spe,
            *common,
        ],
        work / "ray_job.log",
    )
    print(
        f"Ray job, concurrent:     {t_ray:.1f} s (CPU utilisation "
        f"{ray_cpu.utilisation()[1]:.1%} of {os.cpu_count()} cores)",
        flush=True,
    )

    ray_results = json.loads((work / "ray" / "results.json").read_text())
    print(f"\nwall time ratio Ray / plain Keras ({backend}): {t_ray / t_keras:.3f}  (goal <= 0.50)")
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
    where_the_time_went(plain, ray_results["training"], ray_cpu)
    print(f"\nlogs and run folder: {work}")


if __name__ == "__main__":
    main()
