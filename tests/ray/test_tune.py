"""A tiny real hyper-parameter search on a slice: FIFO through the CLI on JAX workers (one
member, then the committee report), ASHA in-process on TensorFlow with the test files made
unreadable, and the strong members' spaces sampled without a cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import run_cli


def _search_on_two_cpus(spec, space, split, where, **options):
    """``(grid, summary)`` of a search two trials at a time in a private two-CPU Ray."""
    import ray

    from committee.distributed import tuning
    from committee.distributed.cluster import Placement, connect

    connect(num_cpus=2)
    try:
        grid = tuning.search(
            spec,
            space,
            split,
            where,
            max_concurrent=2,
            seed=0,
            placement=Placement(cpus=tuning.trial_cpus([{"CPU": 2.0}], 2), gpus=0.0),
            steps_per_execution=8,
            **options,
        )
        return grid, tuning.summarize(spec, space, grid)
    finally:
        ray.shutdown()


STALE_CLUSTER_PROBE = """
import ray
from committee.distributed.cluster import connect
connect(num_cpus=1)

@ray.remote(num_cpus=0)
class Controller:
    def ping(self):
        return True

@ray.remote(num_cpus=0)
def cleaner_view(actor_id):
    # what Ray Train's placement-group cleaner asks, from a worker, to learn that a stopped
    # trial's trainer is gone and its workers' CPUs can be freed
    from ray.train.v2._internal.state.util import is_actor_alive
    return is_actor_alive(actor_id, timeout=20)

controller = Controller.remote()
ray.get(controller.ping.remote())
print("alive:", ray.get(cleaner_view.remote(controller._actor_id.hex())))
"""


def test_fifo_search_through_the_cli_under_storage(tmp_path, capsys):
    proc = run_cli(
        "tune",
        "--members",
        "model1",
        "--num-samples",
        "2",
        "--epochs",
        "1",
        "--limit-train",
        "600",
        "--backend",
        "jax",
        "--scheduler",
        "fifo",
        "--output",
        str(tmp_path),
        "--run-name",
        "search",
        "--storage",
        str(tmp_path / "shared"),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = tmp_path / "search"
    # --storage: the experiments and trials go under the shared storage, as a run's
    # checkpoints do, not under the local run folder
    instance = json.loads((run_dir / "config.json").read_text())["instance"]
    experiment = tmp_path / "shared" / "search" / instance / "tune" / "model1"
    assert any((experiment / "trials").iterdir()), "no trial of model1 under the storage"
    assert not (run_dir / "tune").exists()
    best = json.loads((run_dir / "best_configs.json").read_text())
    assert set(best) == {"model1"}
    assert {"learning_rate", "batch_size", "optimizer", "arch.filters"} <= set(best["model1"])
    trials = pq.read_table(run_dir / "trials.parquet").to_pandas()
    assert trials["member"].value_counts().to_dict() == {"model1": 2}
    assert trials["val_accuracy"].between(0, 1).all()
    results = json.loads((run_dir / "results.json").read_text())
    for which in ("default", "tuned"):
        assert set(results[which]["members"]) == {"model1"}
        assert 0 < results[which]["committee"]["mean"]["accuracy"] <= 1
    report = (run_dir / "report.md").read_text()
    assert "committee (mean)" in report and "tuned test acc" in report
    assert (run_dir / "figures" / "trials.png").stat().st_size > 5_000
    assert not (run_dir / "INCOMPLETE").exists()
    out = proc.stdout + proc.stderr  # one plain line per trial result, not Tune's tables
    assert len(out.strip().splitlines()) < 25, out
    assert out.count(": trial ") == 2 and "epoch 1: val_accuracy 0." in out
    for noise in ("╭", "Trial status", "I0000", "cuInit", "\x1b["):
        assert noise not in out, (noise, out)
    _the_search_is_usable(run_dir, best, tmp_path, capsys)


def _the_search_is_usable(run_dir, best, tmp_path, capsys):
    """What a finished search's folder is for, without training again (no Ray): report
    rewrites its report, predict says what to run instead, and best_configs.json passes
    committee run --config's checks up to where Ray would start."""
    from committee.app import cli
    from committee.app.options import RunOptions, validate

    report = (run_dir / "report.md").read_text()
    assert "committee run --config <this folder>/best_configs.json" in report
    (run_dir / "report.md").unlink()
    assert cli.main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").read_text() == report  # the same report, from results.json

    capsys.readouterr()
    assert cli.main(["predict", str(run_dir), str(tmp_path / "one.npy")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"committee: error: {run_dir} is a search's folder (committee tune), which keeps no "
        "trained committee; expected a run's: train its best configurations with committee "
        f"run --config {run_dir / 'best_configs.json'}, then predict with that run's folder"
    ]

    config = str(run_dir / "best_configs.json")
    options = RunOptions(config=config, output=str(tmp_path / "runs"))
    specs = validate(options)  # every check before data and Ray
    assert [s.name for s in specs] == ["model1"]
    for spec in specs:
        assert spec.learning_rate == best[spec.name]["learning_rate"]
        assert spec.batch_size == best[spec.name]["batch_size"]
        assert spec.optimizer == best[spec.name]["optimizer"]
    # the run stops before Ray at the first bad option after --config's checks pass
    assert cli.main(["run", "--config", config, "--run-name", "a/b"]) == 2
    assert "--run-name 'a/b' must be a plain folder name" in capsys.readouterr().err
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps({**best, "model1": {**best["model1"], "momentum": 0.9}}))
    assert cli.main(["run", "--config", str(damaged), "--output", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"committee: error: --config {damaged}: key 'momentum' of member 'model1' is unknown; "
        "expected one of batch_size, ema_momentum, epochs, erasing, label_smoothing, "
        "learning_rate, optimizer, patience, shift or arch.<builder keyword>"
    )


def test_a_strong_members_trials_sample_their_own_augmentation():
    """`tune --preset strong` has a space per strong member (rate, size, augmentation); Tune's
    seeded generator gives the trials their own erasing and shift, and each trial's spec
    carries them (what the trial's worker trains with). No cluster is needed for this."""
    from ray.tune.search.variant_generator import generate_variants

    from committee.distributed import tuning
    from committee.members import spec as members

    for strong in members.STRONG_PRESET:
        space = tuning.member_space(strong, epochs=1)
        assert {"learning_rate", "erasing", "shift"} <= set(space), strong.name
        default = tuning.default_config(strong, space)
        assert default["erasing"] == strong.erasing and default["shift"] == strong.shift
        configs = [
            config
            for seed in range(4)
            for _, config in generate_variants(
                tuning.to_tune_space(space), random_state=np.random.RandomState(seed)
            )
        ]
        specs = [members.apply_config(strong, c) for c in configs]
        assert [(s.erasing, s.shift) for s in specs] == [
            (c["erasing"], c["shift"]) for c in configs
        ]
        assert len({s.erasing for s in specs}) > 1, strong.name


def test_asha_search_never_touches_the_test_set(tmp_path, dataset, monkeypatch):
    """Also: ASHA may stop trials, but never the default configuration (it trains to its end),
    and the CPUs of stopped trials are freed for the next ones (the time budget turns a
    wait-forever regression into a failure)."""
    from committee.data import fashion_mnist as data
    from committee.distributed import tuning
    from committee.members import spec as members

    split = data.split_train_val(dataset.x_train, dataset.y_train, limit=800)
    # Any attempt to read the test files from here on fails loudly.
    monkeypatch.setitem(data.FILES, "test_images", None)
    monkeypatch.setitem(data.FILES, "test_labels", None)
    spec = members.SEED_PRESET[0].with_overrides(epochs=2)
    space = tuning.member_space(spec, epochs=2)
    grid, summary = _search_on_two_cpus(
        spec,
        space,
        split,
        tmp_path / "tune" / "model1",
        num_samples=3,
        scheduler="asha",
        time_budget_s=400,
    )
    assert summary["trials"] == 3 and summary["errored"] == 0
    assert all(r.metrics and r.metrics.get("epoch") for r in grid), "a trial never started"
    assert summary["default_config"]["learning_rate"] == 0.001
    assert summary["default_val_accuracy"] is not None and summary["default_epochs"] == 2
    assert 0 < summary["best_val_accuracy"] <= 1
    assert summary["best_checkpoint"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--num-samples", "0"], " tune: error: argument --num-samples: 0 must lie in 1..10000"),
        (
            ["--scheduler", "pbt"],
            ": error: --scheduler 'pbt' is unknown; expected one of asha, fifo",
        ),
        (
            ["--max-concurrent", "0"],
            " tune: error: argument --max-concurrent: 0 must lie in 1..10000",
        ),
        (
            ["--time-budget-s", "1e400"],
            " tune: error: argument --time-budget-s: 1e400 must be a finite number in "
            "(0, 31536000]",
        ),
        (
            ["--member-minutes", "5"],
            ": error: --member-minutes 5 applies to committee run; bound a search with "
            "--time-budget-s",
        ),
    ],
)
def test_bad_search_options_fail_before_ray(args, expected, tmp_path):
    proc = run_cli("tune", *args, "--output", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"committee{expected}"]
    assert not any(tmp_path.iterdir())


def test_train_cleaner_finds_this_ray_despite_a_stale_cluster_file():
    """Regression: with /tmp/ray/ray_current_cluster naming a dead cluster (what an earlier
    `ray start` leaves), the cleaner could not reach the State API, so CPUs of trials stopped
    by ASHA were never freed and the next trials waited forever."""
    root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: socket paths are limited
    (root / "ray").mkdir()
    (root / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")  # nothing listens
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    }
    env["RAY_TMPDIR"] = str(root)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", STALE_CLUSTER_PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "alive: True" in proc.stdout
