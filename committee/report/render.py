"""Outputs of a run: results.json, report.md, predictions.parquet and the figures.

``committee report RUN_DIR`` calls :func:`render` to redraw report.md and the figures from
results.json and samples.npz alone.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from committee.data.fashion_mnist import (
    CLASS_NAMES,
    IMAGE_SHAPE,
    NUM_CLASSES,
    NpyFormatError,
    npy_header,
)
from committee.ensemble import fusion
from committee.ensemble.diagnostics import N_BINS, NOISE_LEVEL, noise_of_scores
from committee.errors import one_line
from committee.log import plural
from committee.report import figures, tables
from committee.rundir import folder as runfolder
from committee.rundir import schema
from committee.rundir.folder import BEST_CONFIGS, FIGURES, REPORT, SAMPLES, TRIALS
from committee.rundir.folder import PREDICTIONS as PREDICTIONS  # report.PREDICTIONS, as before

# results.json data.class_counts, in the order the schema declares them
CLASS_COUNT_SPLITS = tuple(schema.CountsBySplit.model_fields)


@dataclass(frozen=True)
class PlannedFigure:
    """One figure of a run: its file in figures/, its alt text in report.md and the function
    that draws it to a path."""

    file: str
    alt: str
    draw: Callable[[Path], object]

    @property
    def link(self) -> str:
        """Its path relative to the run folder, as report.md links it."""
        return f"{FIGURES}/{self.file}"


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict, drawn: Sequence[PlannedFigure], noise: dict | None = None) -> str:
    """The human-readable report: members and committee rules in one table, then a link to
    each figure in ``drawn`` (:func:`figure_plan`), in that order. ``noise``
    (:func:`noise_of`, from predictions.parquet): each test accuracy's Wilson interval, the
    committee's gain over the best member with McNemar's exact test, and the per-class
    accuracy table; None leaves them out (a run folder without predictions.parquet)."""
    run, data = results["run"], results["data"]
    lines = [
        f"# Committee run `{run['name']}`",
        "",
        f"Preset `{run['preset']}`, members {', '.join(run['members'])}; seed {run['seed']}; "
        f"{data['n_train']:,} training / {data['n_val']:,} validation ({data['split']} split) / "
        f"{data['n_test']:,} test images. Wall time {run['wall_s']:.0f} s on Ray "
        f"({run['placement']} per member){_on_backend(run)}.",
        "",
        "Test-set figures. The committee's are computed from its own fused probabilities "
        "(argmax of the fused probabilities), not averaged from the members' figures.",
        "",
        "| model | epochs | val accuracy | test accuracy "
        + ("| 95% interval (Wilson) " if noise else "")
        + "| precision (macro) | recall (macro) | F1 (macro) | log loss |",
        "|---|---|---|---|" + ("---|" if noise else "") + "---|---|---|---|",
    ]

    def interval(name: str) -> str:
        if not noise:
            return ""
        a = noise["accuracy"][name]
        return f" [{a['low']:.4f}, {a['high']:.4f}] |"

    for name, m in results["members"].items():
        training = results["training"][name]
        epochs = f"{training['epochs_run']}" + (
            " (early stop)" if training["stopped_early"] else ""
        )
        if training.get("epochs_planned") is not None:
            ceiling = {s["name"]: s["epochs"] for s in results["config"]["members"]}[name]
            epochs += f" of {ceiling} (time budget)"
        lines.append(
            f"| {name} | {epochs} | {_fmt(m.get('val_accuracy'))} | "
            f"{_fmt(m['accuracy'])} |{interval(name)} {_fmt(m['precision_macro'])} | "
            f"{_fmt(m['recall_macro'])} | {_fmt(m['f1_macro'])} | {_fmt(m['log_loss'])} |"
        )
    for rule, m in results["committee"].items():
        lines.append(
            f"| **committee ({rule})** | – | {_fmt(m.get('val_accuracy'))} | "
            f"**{_fmt(m['accuracy'])}** |{interval(f'committee_{rule}')} "
            f"{_fmt(m['precision_macro'])} | "
            f"{_fmt(m['recall_macro'])} | {_fmt(m['f1_macro'])} | {_fmt(m['log_loss'])} |"
        )
    best = results["best_member"]
    gain = results["gain_over_best_member"]
    lines += [
        "",
        f"Best single member: **{best}** ({_fmt(results['members'][best]['accuracy'])}). "
        "Committee gain over it: "
        + ", ".join(f"{rule} {g:+.4f}" for rule, g in gain.items())
        + f". Oracle accuracy (some member right): {_fmt(results['oracle_accuracy'])}.",
    ]
    if noise:
        lines += ["", *_gain_lines(noise, list(results["committee"]))]
    if "weights" in results:
        lines += [
            "",
            f"Weights of the `{fusion.WEIGHTED}` rule (fitted on the validation split by "
            "minimising log loss): "
            + ", ".join(f"{n} {w:.3f}" for n, w in results["weights"].items())
            + ". Its val accuracy is out of fold: each fifth of the validation split "
            "fused with weights fitted on the other four fifths.",
        ]
    lines += [
        "",
        "## Calibration (test set)",
        "",
        f"| model | NLL | Brier | ECE ({N_BINS} bins) |",
        "|---|---|---|---|",
    ]
    for name, c in results["calibration"].items():
        lines.append(
            f"| {name.replace('committee_', 'committee ')} | {_fmt(c['nll'])} | "
            f"{_fmt(c['brier'])} | {_fmt(c['ece'])} |"
        )
    if results["diversity"]:
        lines += [
            "",
            "## Diversity between members (test set)",
            "",
            "| pair | disagreement | Yule's Q | double fault |",
            "|---|---|---|---|",
        ]
        for pair, d in results["diversity"].items():
            lines.append(
                f"| {pair.replace('|', ' / ')} | {_fmt(d['disagreement'])} | "
                f"{_fmt(d['q_statistic'])} | {_fmt(d['double_fault'])} |"
            )
    if noise:
        lines += ["", *_per_class_lines(noise)]
    lines += ["", "## Figures", ""]
    lines += [f"- ![{figure.alt}]({figure.link})" for figure in drawn]
    lines.append("")
    return "\n".join(lines)


def _gain_lines(noise: dict, rules: list[str]) -> list[str]:
    """The committee's gain over the best member per rule, with McNemar's exact test, and a
    sentence saying whether it is within the noise of the test set."""
    best, n = noise["best_member"], noise["accuracy"][noise["best_member"]]["n"]
    lines = [
        f"Is the gain more than noise? McNemar's exact test on the {n:,} paired test "
        f"predictions, each rule against {best}: b = images only the committee gets right, "
        f"c = images only {best} gets right, p = the two-sided exact (binomial) p-value.",
        "",
        "| rule | gain over " + best + " | b | c | McNemar p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for rule in rules:
        g = noise["gain"][rule]
        within = g["p_value"] >= NOISE_LEVEL
        verdict = (
            f"within the noise (p ≥ {NOISE_LEVEL:g})"
            if within
            else f"beyond the noise (p < {NOISE_LEVEL:g})"
        )
        lines.append(
            f"| {rule} | {g['gain']:+.4f} | {g['b']} | {g['c']} | {g['p_value']:.3g} | {verdict} |"
        )
    within = [r for r in rules if noise["gain"][r]["p_value"] >= NOISE_LEVEL]
    if len(within) == len(rules):
        sentence = (
            f"Every rule's difference from {best} is within the noise of this test set "
            f"(McNemar p ≥ {NOISE_LEVEL:g}): the test set cannot tell the committee from its best "
            "member."
        )
    elif not within:
        sentence = (
            f"Every rule's difference from {best} is beyond the noise of this test set "
            f"(McNemar p < {NOISE_LEVEL:g})."
        )
    else:
        sentence = (
            f"Within the noise (McNemar p ≥ {NOISE_LEVEL:g}): {', '.join(within)}; beyond it: "
            f"{', '.join(r for r in rules if r not in within)}."
        )
    return [*lines, "", sentence]


def _per_class_lines(noise: dict) -> list[str]:
    """Accuracy on each class's test images (its recall), members and committee rules."""
    names = list(noise["per_class"])
    header = [n.replace("committee_", "committee ") for n in names]
    lines = [
        "## Per-class test accuracy",
        "",
        "| class | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(names),
    ]
    for k, label in enumerate(CLASS_NAMES):
        cells = [_fmt(noise["per_class"][n][k]) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def noise_of(run_dir: Path, results: dict) -> dict | None:
    """:func:`committee.ensemble.diagnostics.noise_of_scores` recomputed from the run's
    predictions.parquet (the labels and each member's and rule's classes), or None when the
    folder has none (runs are scored before it is written only in tests). Raises
    :class:`~committee.rundir.folder.RunFolderError` when it is unreadable or disagrees with
    results.json."""
    path = run_dir / PREDICTIONS
    if not os.path.lexists(path):
        return None
    runfolder.check_inside(run_dir, [path])
    members, rules = list(results["members"]), list(results["committee"])
    names = [*members, *(f"committee_{r}" for r in rules)]
    labels, classes = tables.read_predicted_classes(path, names, results["data"]["n_test"])
    return noise_of_scores(labels, classes, members, rules, NUM_CLASSES)


def render(run_dir: str | Path, results: dict | None = None) -> list[Path]:
    """(Re)write report.md and every figure from ``results`` (default: results.json) and
    samples.npz; return the paths written.

    The run folder is untrusted: results.json is checked against :mod:`committee.rundir.schema`,
    samples.npz is read without pickles and its arrays checked, and every output path must
    resolve inside ``run_dir``, with a name its file system takes, in a writable folder
    (:func:`~committee.rundir.folder.check_outputs`) — all before anything is drawn.

    Raises :class:`~committee.rundir.folder.RunFolderError` (one line naming the file and field).
    """
    run_dir = Path(run_dir)
    if results is None and runfolder.is_search(run_dir):
        return render_search(run_dir)
    results = _checked_results(run_dir, results)
    samples = read_samples(run_dir / SAMPLES)
    noise = noise_of(run_dir, results)
    plan = _outputs(run_dir, results, figure_plan(results, samples), noise)
    runfolder.check_outputs(run_dir, list(plan))
    runfolder.make_folder(run_dir, FIGURES)  # a real folder: figures.save renames within it
    for path, draw in plan.items():
        draw(path)
    return list(plan)


def _checked_results(run_dir: Path, results: dict | None) -> dict:
    """results.json (or ``results``, as it will be written) after :func:`schema.check_results`.

    Returns the plain dict that was checked: ``results`` goes through JSON first, so what is
    drawn now is exactly what ``committee report`` will read back later.
    """
    path = run_dir / runfolder.RESULTS
    if results is None:
        runfolder.door.require_regular(path, "the folder of a finished run")
        return schema.read_results(path)
    results = json.loads(runfolder.json_text(results))
    schema.check_results(results, str(path))
    return results


def figure_plan(
    results: dict, samples: tuple[np.ndarray, np.ndarray] | None
) -> list[PlannedFigure]:
    """The figures of a run, in report.md's order: each member's training curves, the
    confusion matrices, the diversity (two members or more), the reliability diagram, the
    class distribution, and the sample images when ``samples`` (:func:`read_samples`) is not
    None. ``results``: a checked results.json."""
    plan = [
        PlannedFigure(
            figures.curves_png(name),
            f"{name} training curves",
            partial(figures.training_curves, name, results["training"][name]["history"]),
        )
        for name in results["members"]
    ]
    plan.append(
        PlannedFigure(
            figures.CONFUSION_PNG,
            "confusion matrices",
            partial(figures.confusion_matrices, results["confusion_matrix"]),
        )
    )
    if len(results["members"]) > 1:
        plan.append(
            PlannedFigure(
                figures.DIVERSITY_PNG,
                "diversity",
                partial(figures.diversity_matrices, results["diversity"], list(results["members"])),
            )
        )
    plan.append(
        PlannedFigure(
            figures.RELIABILITY_PNG,
            "reliability diagram",
            partial(figures.reliability_diagram, results["reliability"]),
        )
    )
    counts = {split: results["data"]["class_counts"].get(split) for split in CLASS_COUNT_SPLITS}
    plan.append(
        PlannedFigure(
            figures.CLASS_DISTRIBUTION_PNG,
            "class distribution",
            partial(figures.class_distribution, {k: v for k, v in counts.items() if v is not None}),
        )
    )
    if samples is not None:
        plan.append(
            PlannedFigure(
                figures.SAMPLES_PNG, "sample images", partial(figures.sample_grid, *samples)
            )
        )
    return plan


def _outputs(
    run_dir: Path, results: dict, drawn: Sequence[PlannedFigure], noise: dict | None = None
) -> dict[Path, Callable[[Path], object]]:
    """Every file :func:`render` writes, each with the function that writes it: the figures
    ``drawn`` and report.md, which links exactly those."""
    plan: dict[Path, Callable[[Path], object]] = {
        run_dir / figure.link: figure.draw for figure in drawn
    }
    plan[run_dir / REPORT] = lambda path: runfolder.write_text(
        path, markdown(results, drawn, noise), run_dir
    )
    return plan


# --------------------------------------------------------------------------- a search


def write_search(
    run_dir: Path,
    summaries: dict[str, dict],
    trials: pa.Table,
    curves: dict[str, list],
    scores: dict,
    meta: dict,
) -> None:
    """A search's outputs: best_configs.json, trials.parquet (``trials``: tuning.trials_table),
    figures/trials.png (``curves``: tuning.trial_histories), results.json and report.md
    (names: :mod:`committee.rundir.folder`, :mod:`committee.report.figures`)."""
    runfolder.write_json(
        run_dir / BEST_CONFIGS, {n: s["best_config"] for n, s in summaries.items()}, run_dir
    )
    tables.write_predictions(run_dir / TRIALS, trials, run_dir)
    runfolder.make_folder(run_dir, FIGURES)
    figures.trial_curves(curves, run_dir / FIGURES / figures.TRIALS_PNG)
    runfolder.write_json(
        run_dir / runfolder.RESULTS, {"search": meta, "members": summaries, **scores}, run_dir
    )
    runfolder.write_text(run_dir / REPORT, search_markdown(summaries, scores, meta), run_dir)


def render_search(run_dir: str | Path) -> list[Path]:
    """(Re)write a search's report.md from its results.json (checked: schema.SearchResults);
    return the paths written. Its figures/trials.png stays as the search drew it (the
    trials' curves are not kept). Raises :class:`~committee.rundir.folder.RunFolderError`
    naming the file, and what to run instead when the search has not finished."""
    run_dir = Path(run_dir)
    path = run_dir / runfolder.RESULTS
    unfinished = (run_dir / runfolder.INCOMPLETE).exists()
    runfolder.door.require_regular(
        path,
        "a finished search's results"
        + (": rerun the same committee tune --run-name to finish it" if unfinished else ""),
    )
    results = schema.read_search_results(path)
    scores = {k: results[k] for k in ("default", "tuned") if results.get(k) is not None}
    report = run_dir / REPORT
    runfolder.check_inside(run_dir, [report])
    runfolder.write_text(report, search_markdown(results["members"], scores, results["search"]))
    return [report]


def _on_backend(run: dict) -> str:
    """ ", Keras on jax" for a run that recorded its backend (runs before 2026-11-30 did not)."""
    backend = run.get("backend")
    return f", Keras on {backend}" if isinstance(backend, str) and backend.isidentifier() else ""


def search_markdown(summaries: dict[str, dict], scores: dict, meta: dict) -> str:
    """The report of a hyper-parameter search (``committee tune``): default and tuned
    members and committees, validation and test accuracy, each member's best configuration.
    ``summaries``: tuning.summarize's per member; ``scores``: tuning.finalize's."""
    lines = [
        f"# Hyper-parameter search `{meta['name']}`",
        "",
        f"{plural(meta['num_samples'], 'configuration')} per member ({meta['scheduler']}), the "
        f"default configuration among them; objective validation accuracy on "
        f"{meta['n_val']:,} validation images. The test set was used only after selection.",
        "",
        "The accuracies below are of the saved default and best checkpoints, predicted "
        "with each member's test-time augmentation; the search's own per-epoch figures "
        "(no TTA) are in `trials.parquet`.",
        "",
        "| model | default val acc | tuned val acc | default test acc | tuned test acc "
        "| best configuration |",
        "|---|---|---|---|---|---|",
    ]

    def acc(which, name, key="accuracy"):
        block = scores.get(which, {}).get("members", {}).get(name)
        return "–" if block is None or key not in block else f"{block[key]:.4f}"

    for name, s in summaries.items():
        config = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in s["best_config"].items()
        )
        lines.append(
            f"| {name} | {acc('default', name, 'val_accuracy')} | "
            f"{acc('tuned', name, 'val_accuracy')} | {acc('default', name)} | "
            f"{acc('tuned', name)} | {config} |"
        )
    for rule in fusion.RULES:
        cells = []
        for which in ("default", "tuned"):
            block = scores.get(which, {}).get("committee", {}).get(rule)
            cells.append(
                ("–", "–")
                if block is None
                else (f"{block.get('val_accuracy', float('nan')):.4f}", f"{block['accuracy']:.4f}")
            )
        lines.append(
            f"| **committee ({rule})** | {cells[0][0]} | {cells[1][0]} | "
            f"{cells[0][1]} | {cells[1][1]} | |"
        )
    lines += [
        "",
        f"Trials: `{TRIALS}`; curves: `{FIGURES}/{figures.TRIALS_PNG}`; best configurations: "
        f"`{BEST_CONFIGS}`.",
        "",
        f"The search keeps no trained committee: to train and use one with these "
        f"configurations, `committee run --config <this folder>/{BEST_CONFIGS}` (with the "
        "search's `--preset`), then `committee predict` / `committee report` on that run.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- samples.npz

SAMPLE_ARRAYS = ("images", "labels")
MAX_SAMPLES = figures.SAMPLE_ROWS * figures.SAMPLE_COLS
MAX_SAMPLES_BYTES = 16 << 20  # 75 images take about 60 kB


def read_samples(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The sample images of samples.npz, or None when the run has none.

    Returns ``images`` uint8 ``(n, 28, 28)`` and ``labels`` integer ``(n,)`` in 0..9, with
    1 <= n <= MAX_SAMPLES. Pickled arrays are refused, and each array's declared dtype and
    shape are checked before its data is read, so a small file cannot inflate into a large
    array. Raises :class:`~committee.rundir.folder.RunFolderError` naming the file and the array.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return None
    try:
        if path.stat().st_size > MAX_SAMPLES_BYTES:
            raise runfolder.RunFolderError(
                f"{path}: larger than {MAX_SAMPLES_BYTES:,} bytes; "
                f"expected at most {MAX_SAMPLES} sample images"
            )
        with runfolder.door.open_regular(path) as f:  # a FIFO is refused before a read
            with zipfile.ZipFile(f) as archive:
                headers = {key: _npy_header(archive, key, path) for key in SAMPLE_ARRAYS}
            _check_sample_headers(path, **headers)
            f.seek(0)
            with np.load(f, allow_pickle=False) as npz:
                images, labels = (npz[key] for key in SAMPLE_ARRAYS)
    except runfolder.RunFolderError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise runfolder.RunFolderError(
            f"{path}: not a readable npz of plain arrays "
            f"({one_line(exc, limit=None)}); expected arrays "
            f"'images' and 'labels' as committee run writes them"
        ) from None
    if labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise runfolder.RunFolderError(
            f"{path}: array 'labels' holds {int(labels.min())}.."
            f"{int(labels.max())}; expected class indices in "
            f"0..{NUM_CLASSES - 1}"
        )
    return images, labels


def _npy_header(archive: zipfile.ZipFile, key: str, path: Path) -> tuple[tuple, np.dtype]:
    """The declared ``(shape, dtype)`` of array ``key`` in an npz, without reading its data."""
    try:
        member = archive.open(f"{key}.npy")
    except KeyError:
        raise runfolder.RunFolderError(
            f"{path}: array {key!r} is missing; expected arrays "
            f"{' and '.join(map(repr, SAMPLE_ARRAYS))}"
        ) from None
    with member:
        try:
            return npy_header(member)
        except NpyFormatError as exc:
            raise runfolder.RunFolderError(f"{path}: array {key!r} has {exc}") from None


def _check_sample_headers(path: Path, images: tuple, labels: tuple) -> None:
    """Raise unless images are uint8 (n, 28, 28) and labels integer (n,), 1 <= n <= MAX_SAMPLES."""
    (image_shape, image_dtype), (label_shape, label_dtype) = images, labels
    n = image_shape[0] if image_shape else 0
    if (
        image_dtype != np.uint8
        or len(image_shape) != 3
        or image_shape[1:] != IMAGE_SHAPE
        or not 1 <= n <= MAX_SAMPLES
    ):
        raise runfolder.RunFolderError(
            f"{path}: array 'images' is {image_dtype} "
            f"{image_shape}; expected uint8 (n, 28, 28) with "
            f"1 <= n <= {MAX_SAMPLES}"
        )
    if label_dtype.kind not in "iu" or label_shape != (n,):
        raise runfolder.RunFolderError(
            f"{path}: array 'labels' is {label_dtype} "
            f"{label_shape}; expected integers of shape ({n},)"
        )
