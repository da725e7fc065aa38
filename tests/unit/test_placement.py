"""Resources asked of Ray, computed without a cluster: a member's Placement, the trials of a
search (tuning.plan_trials)."""

from __future__ import annotations

import pytest

from committee.distributed import tuning


def test_trials_share_the_cpus_with_what_each_trial_holds_itself():
    placement, concurrency = tuning.plan_trials(
        [{"CPU": 2.0}], num_samples=8, max_concurrent=None, cpus=None, gpus=None
    )
    assert concurrency == 2 and placement.cpus == tuning.trial_cpus([{"CPU": 2.0}], 2) == 0.99
    _, concurrency = tuning.plan_trials([{"CPU": 8.0}], 3, None, None, None)
    assert concurrency == 3
    with pytest.raises(ValueError) as error:
        tuning.plan_trials([{"CPU": 2.0}], 8, 2, 1.0, None)
    assert str(error.value) == (
        "--max-concurrent 2 trials of 1 CPU (+ 0.01 each for the trial) "
        "need more than the cluster's 2 CPUs; lower one of them"
    )
