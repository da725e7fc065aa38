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


def test_a_private_ray_has_token_auth_unless_the_user_turns_it_off(tmp_path):
    """Ray itself starts with no authentication and no warning for any RAY_AUTH_MODE but
    "token", and writes its token under ~/.ray (no writable home: no Ray at all)."""
    from committee.distributed.cluster import private_auth_env

    for environ in ({}, {"RAY_AUTH_MODE": ""}, {"RAY_AUTH_MODE": "token"}):
        env = private_auth_env(environ)
        assert env["RAY_AUTH_MODE"] == "token"
        assert len(env["RAY_AUTH_TOKEN"]) == 64  # a new token, held in memory only
    assert private_auth_env({})["RAY_AUTH_TOKEN"] != private_auth_env({})["RAY_AUTH_TOKEN"]
    named = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")}
    assert private_auth_env(named) == {"RAY_AUTH_MODE": "token"}  # the user's token is used
    assert private_auth_env({"RAY_AUTH_MODE": "disabled"}) == {}  # said in so many words
    for junk in ("junk", "off", "TOKEN", "none"):
        with pytest.raises(ValueError, match=f"^RAY_AUTH_MODE '{junk}' is unknown"):
            private_auth_env({"RAY_AUTH_MODE": junk})
