"""Seeds: a run's seed, each member's, and a resumed member's.

A member's seed derives from the run seed and the member's fixed place in its preset
(:func:`member_seed`), never from its position on the command line, so ``--members model3``
trains the same model3 as the full preset. Every seed lies in ``0..MAX_SEED`` (TensorFlow's
and NumPy's range).
"""

from __future__ import annotations

from committee.members.spec import PRESETS

MAX_SEED = 2**32 - 1


def check_seed(seed: int, option: str = "--seed") -> int:
    """Return ``seed`` if it lies in 0..MAX_SEED; raise ValueError naming ``option`` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{option} {seed!r} is out of range; expected an integer in 0..{MAX_SEED}")
    return seed


def member_seed(run_seed: int, preset: str, name: str) -> int:
    """The seed member ``name`` of ``preset`` trains with: ``run_seed`` plus the member's place
    in the preset, wrapped into 0..MAX_SEED (``--seed 0`` gives the seed preset's model1,
    model2, model3 the seeds 0, 1, 2 whichever of them are trained)."""
    names = [spec.name for spec in PRESETS[preset]]
    return (check_seed(run_seed) + names.index(name)) % (MAX_SEED + 1)


def resume_seed(seed: int, epoch: int) -> int:
    """The seed of a member resumed after ``epoch`` epochs (fresh shuffles), in range."""
    return (seed + 1000 * epoch) % (MAX_SEED + 1)
