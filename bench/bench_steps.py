"""Benchmark: what one training step and one validation pass cost each member, on this machine.

One process, one TensorFlow thread (as each member gets on a 2-core machine), batch as in the
spec, ``steps_per_execution=32``. Prints milliseconds per training step, the epoch that implies
on the training split (48,000 images), and the validation pass (12,000 images). Use it to
tell machines apart before a long run (e.g. an AMX CPU training in bfloat16 against an
AVX2-only one falling back to float32) and to choose ``--member-minutes``.

    python bench/bench_steps.py                          # the strong preset's three members
    python bench/bench_steps.py --members vgg --no-augment
    python bench/bench_steps.py --preset seed --xla

This is a benchmark that prints figures, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from committee import architectures, data, members  # noqa: E402
from committee.training import (compile_member, configure_tensorflow,  # noqa: E402
                                effective_precision, one_hot)

STEPS = 64  # timed training steps per member


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="strong", choices=sorted(members.PRESETS))
    parser.add_argument("--members", help="comma-separated members (default: all)")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder (default: as committee run)")
    parser.add_argument("--no-augment", action="store_true",
                        help="build the models without their augmentation layers")
    parser.add_argument("--xla", action="store_true", help="compile with jit_compile=True")
    args = parser.parse_args()

    configure_tensorflow(threads=1)
    if args.no_augment:
        architectures._augment = lambda layers, erasing, shift: []
    specs = members.select_members(args.preset, args.members.split(",") if args.members else None)
    dataset = data.load(args.data_dir)
    split = data.split_train_val(dataset.x_train, dataset.y_train)
    y_val = one_hot(split.y_val)
    print(f"precision {effective_precision(specs[0].precision)}; one thread; "
          f"augmentation {'off' if args.no_augment else 'on'}; xla {args.xla}", flush=True)
    for spec in specs:
        n = spec.batch_size * STEPS
        x, y = split.x_train[:n], one_hot(split.y_train[:n])
        model = compile_member(spec, steps_per_execution=32,
                               jit_compile=True if args.xla else "auto")
        model.fit(x[:n // 2], y[:n // 2], batch_size=spec.batch_size, verbose=0)  # warm-up
        started = time.perf_counter()
        model.fit(x, y, batch_size=spec.batch_size, verbose=0)
        step = (time.perf_counter() - started) / STEPS
        model.evaluate(split.x_val[:1024], y_val[:1024], batch_size=spec.batch_size, verbose=0)
        started = time.perf_counter()
        model.evaluate(split.x_val, y_val, batch_size=spec.batch_size, verbose=0)
        val_s = time.perf_counter() - started
        epoch = len(split.y_train) / spec.batch_size * step
        print(f"{spec.name:<8} {1000 * step:7.1f} ms/step   epoch ~{epoch:5.0f} s alone   "
              f"validation pass {val_s:5.1f} s ({100 * val_s / (epoch + val_s):.1f}% of an epoch)",
              flush=True)


if __name__ == "__main__":
    main()
