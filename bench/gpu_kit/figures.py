"""One line of figures for run.sh (docs/gpu-kit.md); standard library only.

    python figures.py run   LABEL RUN_DIR WALL_S    # a `committee run` folder's results.json
    python figures.py plain LABEL RESULT_JSON WALL_S [RAY_WALL_S]
                                                    # bench_seed.py --plain-keras-only's JSON
    python figures.py predict LABEL PARQUET WALL_S RUN_DIR
                                                    # `committee predict` of the test images

Per member: epochs run, seconds per epoch and test accuracy. For a run, seconds per epoch is
the member's train_s / epochs_run from results.json (from its start to its predictions, so
start-up, the first epoch's compiling and predicting count), then in brackets the steady
pace: the median epoch after the first, from the member's newest checkpoint (state.json), where
there is one. For the plain side it is train_s / epochs (training only). RAY_WALL_S gives the
ratio of the two wall times, (a)/(b).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def steady_pace(run_dir: Path, member: str) -> float | None:
    best: list[float] = []
    for path in (run_dir / "train").rglob("state.json"):
        if member not in path.relative_to(run_dir).parts:
            continue
        try:
            seconds = json.loads(path.read_text()).get("epoch_seconds") or []
        except (OSError, ValueError):
            continue
        if len(seconds) > len(best):
            best = seconds
    return statistics.median(best[1:]) if len(best) > 1 else None


def run_line(label: str, run_dir: Path, wall: float) -> str:
    results = json.loads((run_dir / "results.json").read_text())
    parts = []
    gpus: set[str] = set()
    for name, member in results["members"].items():
        training = results["training"][name]
        epochs = training["epochs_run"]
        per_epoch = training.get("train_s", float("nan")) / max(1, epochs)
        steady = steady_pace(run_dir, name)
        pace = f"{per_epoch:.2f} s/ep" + (f" [{steady:.2f} steady]" if steady else "")
        parts.append(f"{name} {epochs} ep {pace} acc {member['accuracy']:.4f}")
        gpus.update((training.get("device") or {}).get("gpus") or [])
    committee = results["committee"]["mean"]["accuracy"]
    planned = {n: t.get("epochs_planned") for n, t in results["training"].items()}
    plan = (
        "; epochs planned " + ", ".join(f"{n} {p}" for n, p in planned.items())
        if any(planned.values())
        else ""
    )
    precision = next(iter(results["training"].values())).get("precision")
    return (
        f"{label}: wall {wall:.1f} s (job {results['run']['wall_s']:.1f} s); "
        + "; ".join(parts)
        + f"; committee mean {committee:.4f}{plan}; "
        + (f"precision {precision}; " if precision else "")
        + f"gpus {', '.join(sorted(gpus)) or 'none'}"
    )


def plain_line(label: str, result: Path, wall: float, ray_wall: float | None) -> str:
    plain = json.loads(result.read_text())
    parts = [
        f"{name} {plain['epochs'][name]} ep "
        f"{plain['train_s'][name] / max(1, plain['epochs'][name]):.2f} s/ep acc {acc:.4f}"
        for name, acc in plain["members"].items()
    ]
    line = (
        f"{label}: wall {wall:.1f} s; "
        + "; ".join(parts)
        + f"; committee mean {plain['committee']['mean']:.4f}"
    )
    if ray_wall:
        line += f"; ratio (a)/(b) {ray_wall / wall:.3f}"
    return line


def predict_line(label: str, output: Path, wall: float, run_dir: Path) -> str:
    """Rows, wall time, and agreement with the run's own test predictions (same images, same
    members and rule: any difference is numerical, e.g. another batch size on the GPU)."""
    import pyarrow.parquet as pq  # on the node; this file is otherwise standard library only

    new = pq.read_table(output, columns=["index", "class"]).to_pydict()
    run = pq.read_table(run_dir / "predictions.parquet").to_pydict()
    by_index = dict(zip(run["index"], run["committee_mean_pred"]))
    labels = dict(zip(run["index"], run["label"]))
    same = sum(by_index[i] == c for i, c in zip(new["index"], new["class"]))
    right = sum(labels[i] == c for i, c in zip(new["index"], new["class"]))
    n = len(new["class"])
    return (
        f"{label}: wall {wall:.1f} s; {n} rows ({n / wall:.0f} images/s from start-up); "
        f"same class as the run's predictions.parquet {same}/{n}; accuracy {right / n:.4f}"
    )


def main(argv: list[str]) -> int:
    kind, label, path, wall = argv[0], argv[1], Path(argv[2]), float(argv[3])
    if kind == "run":
        print(run_line(label, path, wall))
    elif kind == "predict":
        print(predict_line(label, path, wall, Path(argv[4])))
    else:
        print(plain_line(label, path, wall, float(argv[4]) if len(argv) > 4 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
