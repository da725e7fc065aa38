"""Outputs of a run: results.json, report.md, predictions.parquet and the figures.

``committee report RUN_DIR`` calls :func:`render` to redraw report.md and the figures from
results.json and samples.npz alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from committee import figures, runfolder
from committee.data import CLASS_NAMES

PREDICTIONS, REPORT, SAMPLES = "predictions.parquet", "report.md", "samples.npz"


def predictions_table(y_test: np.ndarray, member_probas: dict[str, np.ndarray],
                      committee_probas: dict[str, np.ndarray]) -> pa.Table:
    """One row per test image: index, label, each member's and each rule's probabilities,
    and each one's predicted class. Probabilities are ``fixed_size_list<float32>[10]``."""
    k = len(CLASS_NAMES)

    def probs(array: np.ndarray) -> pa.FixedSizeListArray:
        flat = pa.array(np.asarray(array, dtype=np.float32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, k)

    columns = {"index": pa.array(np.arange(len(y_test), dtype=np.int32)),
               "label": pa.array(np.asarray(y_test, dtype=np.int8))}
    for name, array in member_probas.items():
        columns[f"{name}_proba"] = probs(array)
        columns[f"{name}_pred"] = pa.array(np.asarray(array).argmax(axis=1).astype(np.int8))
    for rule, array in committee_probas.items():
        columns[f"committee_{rule}_proba"] = probs(array)
        columns[f"committee_{rule}_pred"] = pa.array(np.asarray(array).argmax(axis=1).astype(np.int8))
    return pa.table(columns)


def write_predictions(path, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    runfolder.write_bytes(path, buffer.getvalue())


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    """The human-readable report: members and committee rules in one table."""
    run, data = results["run"], results["data"]
    lines = [
        f"# Committee run `{run['name']}`",
        "",
        f"Preset `{run['preset']}`, members {', '.join(run['members'])}; seed {run['seed']}; "
        f"{data['n_train']:,} training / {data['n_val']:,} validation ({data['split']} split) / "
        f"{data['n_test']:,} test images. Wall time {run['wall_s']:.0f} s on Ray "
        f"({run['placement']} per member).",
        "",
        "Test-set figures. The committee's are computed from its own fused probabilities "
        "(argmax of the fused probabilities), not averaged from the members' figures.",
        "",
        "| model | epochs | val accuracy | test accuracy | precision (macro) | recall (macro) "
        "| F1 (macro) | log loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["members"].items():
        training = results["training"][name]
        epochs = f"{training['epochs_run']}" + (" (early stop)" if training["stopped_early"] else "")
        if training.get("epochs_planned") is not None:
            ceiling = {s["name"]: s["epochs"] for s in results["config"]["members"]}[name]
            epochs += f" of {ceiling} (time budget)"
        lines.append(f"| {name} | {epochs} | {_fmt(m.get('val_accuracy'))} | "
                     f"{_fmt(m['accuracy'])} | {_fmt(m['precision_macro'])} | "
                     f"{_fmt(m['recall_macro'])} | {_fmt(m['f1_macro'])} | {_fmt(m['log_loss'])} |")
    for rule, m in results["committee"].items():
        lines.append(f"| **committee ({rule})** | – | {_fmt(m.get('val_accuracy'))} | "
                     f"**{_fmt(m['accuracy'])}** | {_fmt(m['precision_macro'])} | "
                     f"{_fmt(m['recall_macro'])} | {_fmt(m['f1_macro'])} | {_fmt(m['log_loss'])} |")
    best = results["best_member"]
    gain = results["gain_over_best_member"]
    lines += [
        "",
        f"Best single member: **{best}** ({_fmt(results['members'][best]['accuracy'])}). "
        "Committee gain over it: " + ", ".join(f"{rule} {g:+.4f}" for rule, g in gain.items())
        + f". Oracle accuracy (some member right): {_fmt(results['oracle_accuracy'])}.",
    ]
    if "weights" in results:
        lines += ["", "Weights of the `weighted` rule (fitted on the validation split by "
                  "minimising log loss): " + ", ".join(f"{n} {w:.3f}"
                                                       for n, w in results["weights"].items())]
    lines += ["", "## Calibration (test set)", "",
              "| model | NLL | Brier | ECE (15 bins) |", "|---|---|---|---|"]
    for name, c in results["calibration"].items():
        lines.append(f"| {name.replace('committee_', 'committee ')} | {_fmt(c['nll'])} | "
                     f"{_fmt(c['brier'])} | {_fmt(c['ece'])} |")
    if results["diversity"]:
        lines += ["", "## Diversity between members (test set)", "",
                  "| pair | disagreement | Yule's Q | double fault |", "|---|---|---|---|"]
        for pair, d in results["diversity"].items():
            lines.append(f"| {pair.replace('|', ' / ')} | {_fmt(d['disagreement'])} | "
                         f"{_fmt(d['q_statistic'])} | {_fmt(d['double_fault'])} |")
    lines += ["", "## Figures", ""]
    for name in results["members"]:
        lines.append(f"- ![{name} training curves](figures/curves_{name}.png)")
    lines += ["- ![confusion matrices](figures/confusion_matrices.png)",
              *(["- ![diversity](figures/diversity.png)"] if results["diversity"] else []),
              "- ![reliability diagram](figures/reliability.png)",
              "- ![class distribution](figures/class_distribution.png)",
              "- ![sample images](figures/samples.png)", ""]
    return "\n".join(lines)


def render(run_dir: str | Path, results: dict | None = None) -> list[Path]:
    """(Re)write report.md and every figure from ``results`` (default: results.json) and
    samples.npz."""
    run_dir = Path(run_dir)
    if results is None:
        results_path = run_dir / runfolder.RESULTS
        if not results_path.is_file():
            raise FileNotFoundError(f"{results_path} not found; expected the folder of a "
                                    f"finished run")
        results = runfolder.read_json(results_path)
    fig_dir = run_dir / "figures"
    written = []
    for name, training in results["training"].items():
        written.append(figures.training_curves(name, training["history"],
                                               fig_dir / f"curves_{name}.png"))
    written.append(figures.confusion_matrices(results["confusion_matrix"],
                                              fig_dir / "confusion_matrices.png"))
    if len(results["members"]) > 1:
        written.append(figures.diversity_matrices(results["diversity"], list(results["members"]),
                                                  fig_dir / "diversity.png"))
    written.append(figures.reliability_diagram(results["reliability"],
                                               fig_dir / "reliability.png"))
    counts = results["data"]["class_counts"]
    written.append(figures.class_distribution(counts["train"], counts["test"],
                                              fig_dir / "class_distribution.png"))
    samples_path = run_dir / SAMPLES
    if samples_path.is_file():
        with np.load(samples_path) as samples:
            written.append(figures.sample_grid(samples["images"], samples["labels"],
                                               fig_dir / "samples.png"))
    runfolder.write_text(run_dir / REPORT, markdown(results))
    written.append(run_dir / REPORT)
    return written
