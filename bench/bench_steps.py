"""Benchmark: what one training step costs each member, with and without its augmentation, on
every Keras backend installed here; and what a validation pass costs.

Each backend runs in its own process (Keras picks its backend at import), with one CPU thread
as each member gets on a 2-core machine (``--threads``), batch as in the spec,
``steps_per_execution=32``. Per member it prints milliseconds per training step on plain
arrays and on the augmented batches ``committee run`` feeds (training.augmented_batches), the
overhead of augmenting, the cost of augmenting one batch alone, the epoch that implies on the
training split (48,000 images) and the validation pass (12,000 images). On a GPU machine the
same figures come from the GPU (the backend's default device).

    python bench/bench_steps.py                          # the strong preset's three members
    python bench/bench_steps.py --members vgg --backends jax
    python bench/bench_steps.py --preset seed --xla

This is a benchmark that prints figures, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = 64  # timed training steps per member


def parse_args(argv=None) -> argparse.Namespace:
    from committee.members import spec as members
    from committee.training import backend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="strong", choices=sorted(members.PRESETS))
    parser.add_argument("--members", help="comma-separated members (default: all)")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder (default: as committee run)")
    parser.add_argument(
        "--backends",
        default=",".join(backend.BACKENDS),
        help="comma-separated Keras backends; those not installed are skipped "
        "(default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    parser.add_argument(
        "--xla",
        action="store_true",
        help="compile with jit_compile=True (TensorFlow; JAX always compiles)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the backend this process runs
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.child:
        return measure(args)
    from committee.training import backend

    for name in args.backends.split(","):
        if name not in backend.BACKENDS:
            sys.exit(
                f"--backends: {name!r} is unknown; expected some of {', '.join(backend.BACKENDS)}"
            )
        if importlib.util.find_spec(name) is None:
            print(f"{name}: not installed, skipped", flush=True)
            continue
        env = {**os.environ, **backend.process_env(name, threads=args.threads)}
        subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", name], env=env, check=False
        )


def measure(args: argparse.Namespace) -> None:
    import numpy as np

    from committee.data import fashion_mnist as data
    from committee.data.augmentation import augment
    from committee.members import spec as members
    from committee.training import backend
    from committee.training.device import effective_precision
    from committee.training.loop import augmented_batches, compile_member, one_hot

    backend.configure(args.child, threads=args.threads)
    specs = members.select_members(args.preset, args.members.split(",") if args.members else None)
    dataset = data.load(args.data_dir)
    split = data.split_train_val(dataset.x_train, dataset.y_train)
    y_val = one_hot(split.y_val)
    print(
        f"{args.child}: precision {effective_precision(specs[0].precision)}; "
        f"{args.threads} thread(s); xla {args.xla}; device {backend.device_kind()}",
        flush=True,
    )
    for spec in specs:
        n = spec.batch_size * STEPS
        x, y = split.x_train[:n], one_hot(split.y_train[:n])
        model = compile_member(
            spec, steps_per_execution=32, jit_compile=True if args.xla else "auto"
        )
        model.fit(x[: n // 2], y[: n // 2], batch_size=spec.batch_size, verbose=0)  # warm-up
        started = time.perf_counter()
        model.fit(x, y, batch_size=spec.batch_size, verbose=0)
        plain = (time.perf_counter() - started) / STEPS
        line = f"  {spec.name:<8} {1000 * plain:7.1f} ms/step plain"
        if spec.augmentation.active:
            batches = augmented_batches(spec, x, y, seed=0, epoch=0)
            model.fit(batches, verbose=0)  # warm-up of the other input path
            started = time.perf_counter()
            model.fit(batches, verbose=0)
            augmented = (time.perf_counter() - started) / STEPS
            rng = np.random.default_rng(0)
            started = time.perf_counter()
            for i in range(STEPS):
                augment(x[i * spec.batch_size : (i + 1) * spec.batch_size], spec.augmentation, rng)
            alone = (time.perf_counter() - started) / STEPS
            line += (
                f"   {1000 * augmented:7.1f} ms/step augmented "
                f"({100 * (augmented / plain - 1):+.0f}%; augmenting a batch alone "
                f"{1e6 * alone:.0f} us)"
            )
        else:
            augmented = plain
        model.evaluate(split.x_val[:1024], y_val[:1024], batch_size=spec.batch_size, verbose=0)
        started = time.perf_counter()
        model.evaluate(split.x_val, y_val, batch_size=spec.batch_size, verbose=0)
        val_s = time.perf_counter() - started
        epoch = len(split.y_train) / spec.batch_size * augmented
        print(f"{line}   epoch ~{epoch:5.0f} s alone   validation pass {val_s:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
