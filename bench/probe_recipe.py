"""Probe: one member of a preset trained alone for a short schedule, with some of its settings
changed, on the training split; prints its validation accuracy. This is how the strong
preset's recipe is chosen (docs/strong-preset-log.md): a lever is kept when its probe gains.

    python bench/probe_recipe.py --member resnet --epochs 8
    python bench/probe_recipe.py --member resnet --epochs 8 --set label_smoothing=0.1
    python bench/probe_recipe.py --member vgg --set ema_momentum=0.999 --set arch.width=24

The schedule is the member's own (cosine for the strong preset) over ``--epochs`` epochs, no
time budget; one CPU thread by default, as a member gets when three share 2 cores. The line
printed gives the settings, seconds per epoch, the final training accuracy (on augmented
batches) and validation accuracy without test-time augmentation, and with the member's own
TTA when ``--tta`` is given. Validation only: the test set is never read. A benchmark that
prints figures, not a test.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_setting(text: str) -> tuple[str, object]:
    """``key=value`` with a Python literal value (``0.1``, ``True``, ``"sgd"``); a bare word
    is a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected key=value")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None) -> None:
    from committee.members import spec as members

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="strong", choices=sorted(members.PRESETS))
    parser.add_argument("--member", required=True, help="the member to train, e.g. resnet")
    parser.add_argument("--epochs", type=int, default=8, help="the schedule's epochs (default 8)")
    parser.add_argument(
        "--set",
        dest="settings",
        type=parse_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a spec field or arch.PARAM to change (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    parser.add_argument("--tta", action="store_true", help="also score with the member's TTA")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder (default: as committee run)")
    args = parser.parse_args(argv)

    from committee.data import fashion_mnist as data
    from committee.training import backend

    try:
        (spec,) = members.select_members(args.preset, [args.member])
        spec = members.apply_config(
            spec, {"epochs": args.epochs, "patience": args.epochs, **dict(args.settings)}
        )
    except ValueError as exc:
        parser.error(str(exc))
    name = os.environ.get("KERAS_BACKEND", backend.DEFAULT)
    os.environ.update(backend.process_env(name, threads=args.threads))
    backend.configure(name, threads=args.threads)

    import numpy as np

    from committee import log
    from committee.training.loop import train_member

    log.setup()
    from committee.training.prediction import predict_proba

    dataset = data.load(args.data_dir)
    split = data.split_train_val(dataset.x_train, dataset.y_train)
    started = time.perf_counter()
    model, state = train_member(
        spec, split.x_train, split.y_train, split.x_val, split.y_val, seed=args.seed, verbose=0
    )
    took = time.perf_counter() - started
    line = (
        f"{args.member} {' '.join(f'{k}={v}' for k, v in args.settings) or 'as preset'} "
        f"seed {args.seed}: {state.epoch} epochs, {took / state.epoch:.0f} s/epoch; "
        f"train acc {state.history['accuracy'][-1]:.4f}, "
        f"val acc {state.history['val_accuracy'][-1]:.4f}"
    )
    if args.tta:
        probs = predict_proba(model, split.x_val, tta=spec.tta)
        line += f", with tta {spec.tta} {float(np.mean(probs.argmax(1) == split.y_val)):.4f}"
    print(line, flush=True)


if __name__ == "__main__":
    main()
