"""``committee export RUN_DIR``: a finished run's committee as one ``.keras`` file.

validate (options, the run folder, the output path; nothing is loaded before all pass) ->
load the members in this process (Keras' safe mode, their moving-average weights) -> one Keras
model (:func:`committee.training.export.committee_model`: the members, **their test-time
augmentation built in as layers**, the mean, fitted weighted or geometric rule) -> saved to a
temporary file beside the output, loaded back with plain ``keras.saving.load_model(path,
safe_mode=True)`` and checked against the members' own predictions (the path ``committee
predict`` takes) on probe images -> renamed into place. No Ray.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from committee import log, validation
from committee.app.options import EXPORT_CHECKS, EXPORT_CONSTRAINTS, ExportOptions
from committee.app.predict import check_output_file, fuse_rule
from committee.ensemble import fusion
from committee.errors import usage_errors
from committee.log import logger
from committee.rundir.finished_run import Committee, load_committee, load_models
from committee.training.export import committee_model

SUFFIX = ".keras"  # Keras 3 saves a whole model only under this extension
PROBE_IMAGES = 16  # images the reloaded file is checked on
TOLERANCE = 1e-5  # the largest difference from the members' own probabilities it may show


def output_path(output: str | os.PathLike, run_dir: Path, overwrite: bool = False) -> Path:
    """The file to write. Raises ValueError naming ``--output``: an extension other than
    .keras, a folder that does not exist or is not writable, a folder given as the file, a
    file that exists (unless ``overwrite``), or one of the run's own files."""
    path = Path(output).expanduser()
    if path.suffix != SUFFIX:
        raise ValueError(
            f"--output {output}: extension {path.suffix or '(none)'!r} is not {SUFFIX!r}; "
            f"expected a file name ending in {SUFFIX}"
        )
    check_output_file(output, path, run_dir, SUFFIX)
    if path.exists() and not overwrite:
        raise ValueError(
            f"--output {output} exists; expected a new file (or --overwrite to replace it)"
        )
    return path


def validate(options: ExportOptions) -> tuple[Committee, Path]:
    """Every check before any model is loaded, in the order a user fixes them: options, the
    run folder, the rule against the run's, the output path. Raises ValueError (one line)."""
    validation.check(options, EXPORT_CONSTRAINTS, EXPORT_CHECKS)
    committee = load_committee(options.run_dir)
    if options.rule not in committee.rules:
        raise ValueError(
            f"--rule {options.rule}: run {committee.name} has no such rule; "
            f"expected one of {', '.join(committee.rules)}"
        )
    return committee, output_path(options.output, Path(options.run_dir), options.overwrite)


def probe_images(n: int = PROBE_IMAGES) -> np.ndarray:
    """Fixed float32 ``(n, 28, 28, 1)`` images in [0, 1] the saved file is checked on."""
    return np.random.default_rng(0).random((n, 28, 28, 1), dtype=np.float32)


def build(committee: Committee, rule: str = fusion.MEAN, models: dict | None = None):
    """The committee's Keras model under ``rule`` (mean, weighted with the run's fitted
    weights, or geometric), each member's TTA built in; ``models``: the members' loaded
    models (default: loaded here). Raises RunFolderError naming a member's file that does not
    load."""
    models = load_models(committee) if models is None else models
    members = [(name, models[name], tta) for name, (_, tta) in committee.members.items()]
    return committee_model(
        members,
        weights=committee.weights if rule == fusion.WEIGHTED else None,
        log_floor=fusion.PROBA_FLOOR if rule == fusion.GEOMETRIC else None,
        name=f"committee_{rule}",
        output_name=f"committee_{rule}",
    )


def export(
    options: ExportOptions, checked: tuple[Committee, Path] | None = None
) -> tuple[Path, float]:
    """Write ``options.run_dir``'s committee as one ``.keras`` file; return the file and the
    largest difference its reloaded model showed from the members' own probabilities on
    :func:`probe_images`. Raises ValueError (one line) on bad input before any model loads,
    RunFolderError when a member's file does not load, RuntimeError when the saved file does
    not reproduce the committee (the file is then not written). ``checked``: what
    :func:`validate` returned for ``options``, when the caller has already called it."""
    log.setup()
    if checked is None:
        with usage_errors():  # a ValueError here is bad input, not a failure of the work
            checked = validate(options)  # before Keras: bad input is one line, at once
    committee, out = checked
    import keras

    from committee.training.prediction import predict_proba

    models = load_models(committee)
    model = build(committee, options.rule, models)
    probe = probe_images()
    expected = fuse_rule(
        committee,
        {
            name: predict_proba(models[name], probe, tta=tta)
            for name, (_, tta) in committee.members.items()
        },
        options.rule,
    )
    temporary = out.with_name(f".{out.stem}.{secrets.token_hex(3)}.tmp{SUFFIX}")
    try:
        model.save(temporary)
        reloaded = keras.saving.load_model(temporary, safe_mode=True)
        got = np.asarray(reloaded.predict(probe, verbose=0), np.float32)
        difference = float(np.abs(got - expected).max())
        if not difference <= TOLERANCE:
            raise RuntimeError(
                f"the exported model differs from the members' own probabilities by "
                f"{difference:.3g} (more than {TOLERANCE:g}) on probe images; nothing was written"
            )
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    tta = ", ".join(f"{n} {t}" for n, (_, t) in committee.members.items())
    logger.info(
        f"committee {committee.name}, rule {options.rule}, TTA built in ({tta}); reloaded in "
        f"safe mode, max |difference| {difference:.2g} from the members' own probabilities "
        f"on {len(probe)} probe images"
    )
    return out, difference
