"""Submitting the committee's job to a running Ray cluster, as ``ray job submit`` does, with
the cluster's token found the way Ray's own processes find it.

Since Ray 2.52 a head started with a plain ``ray start --head`` uses token authentication
whenever a token exists where Ray looks (``RAY_AUTH_TOKEN``, the file named by
``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``), but Ray's job client sends that token
only when ``RAY_AUTH_MODE=token`` is set: the plain ``ray job submit`` then fails in a
traceback. :func:`submit` sends the token whenever one is found (a head without
authentication ignores it) and turns a refusal into one line that names the fix.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from committee.distributed.cluster import AUTH_ENV
from committee.log import logger

ENTRYPOINT = ("python", "jobs/train_committee.py")  # relative to the uploaded working folder
# Never uploaded even where no .gitignore says so (Ray honours the folder's .gitignore too).
EXCLUDES = [".venv", ".git", ".kit", ".gpudata", "runs", "data"]

AGENT_WAIT_S = 60.0  # how long a just-started head may take to accept jobs

NO_TOKEN_FIX = (
    "copy the head's ~/.ray/auth_token to ~/.ray/auth_token here, or set RAY_AUTH_TOKEN=<token> "
    "(or RAY_AUTH_TOKEN_PATH=<file>)"
)


def use_token_if_found(environ=os.environ) -> bool:
    """Make this process's Ray job client send the token Ray would find (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``) by setting ``RAY_AUTH_MODE=token`` when
    it is unset and a token exists. Returns whether a token will be sent. An explicit
    ``RAY_AUTH_MODE`` is respected (``disabled``: no token is sent)."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    mode = environ.get(AUTH_ENV)
    if mode is not None:
        return mode.lower() == "token" and loader.has_token(ignore_auth_mode=True)
    if not loader.has_token(ignore_auth_mode=True):
        return False
    _enable_token_auth()  # sets RAY_AUTH_MODE=token in this process and re-reads Ray's config
    loader.reset_cache()
    return True


def submit(
    address: str,
    run_args: list[str],
    working_dir: Path,
    *,
    submission_id: str | None = None,
    runtime_env: dict | None = None,
    wait: bool = True,
    out=None,
) -> int:
    """Submit ``python jobs/train_committee.py <run_args>`` with ``working_dir`` uploaded to
    the job server at ``address`` (``http://host:port`` of the dashboard), then print the
    job's logs to ``out`` (default stdout) until it ends unless ``wait`` is False.

    Returns the exit status: 0 once the job succeeded (or was submitted, without ``wait``),
    else the job driver's exit status (2: bad options found on the cluster) or 1.
    Raises ConnectionError (one line) when the job server cannot be reached or refuses this
    client's token or lack of one; RuntimeError when Ray refuses the submission (e.g. a
    submission id already used).
    """
    from ray.dashboard.modules.job.sdk import JobSubmissionClient
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus

    out = out or sys.stdout
    # its INFO lines ("WebSocket closed ...") are the client's machinery, not the job's
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    sent_token = use_token_if_found()
    env = {**(runtime_env or {})}
    env.setdefault("working_dir", str(working_dir))
    env["excludes"] = sorted({*env.get("excludes", []), *EXCLUDES})
    try:
        client = JobSubmissionClient(address)
        job_id = _submit_when_ready(
            client,
            entrypoint=shlex.join([*ENTRYPOINT, *run_args]),
            submission_id=submission_id,
            runtime_env=env,
        )
    except AuthenticationError:
        raise ConnectionError(_refused(address, sent_token)) from None
    except ConnectionError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"no Ray job server at {address}: {first}") from None
    logger.info(f"submitted job {job_id} to {address}")
    if not wait:
        logger.info(f"it runs on; follow it with: ray job logs -f {job_id}")
        return 0
    logger.info("its logs follow (Ctrl-C detaches; the job goes on)")

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        logger.info(f"detached; job {job_id} goes on (stop it with: ray job stop {job_id})")
        raise
    info = client.get_job_info(job_id)
    if info.status == JobStatus.SUCCEEDED:
        logger.info(f"job {job_id} succeeded")
        return 0
    code = getattr(info, "driver_exit_code", None)
    reason = f": {info.message.strip().splitlines()[-1]}" if info.message else ""
    logger.error(f"job {job_id} ended {info.status.value.lower()}{reason}")
    return code if isinstance(code, int) and 0 < code < 256 else 1


def _submit_when_ready(client, ready_s: float = AGENT_WAIT_S, **job) -> str:
    """``client.submit_job(**job)``, tried again for up to ``ready_s`` seconds while the head
    has no job agent yet (a head just started registers its agent a few seconds after its
    dashboard answers)."""
    deadline = time.monotonic() + ready_s
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def _refused(address: str, sent_token: bool) -> str:
    if sent_token:
        return (
            f"the Ray cluster at {address} refused this machine's token; use the head's "
            f"(its ~/.ray/auth_token): {NO_TOKEN_FIX}"
        )
    return (
        f"the Ray cluster at {address} requires token authentication and no token was found "
        f"here: {NO_TOKEN_FIX}"
    )
