"""Run folder semantics, atomic writes and the predictions table."""

from __future__ import annotations

import os

import pytest

from committee.rundir import folder as runfolder


def test_lock_is_exclusive_names_the_holder_and_is_freed_by_death(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "r"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from committee.rundir.folder import RunLock\n"
                f"lock = RunLock({str(run)!r}).__enter__(); print('held', flush=True); "
                "time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            runfolder.RunFolderError, match=f"in use by another run \\(process {holder.pid}\\)"
        ):
            with runfolder.RunLock(run):
                pass
    finally:
        holder.kill()  # a dead holder's lock is free at once
        holder.wait()
    with runfolder.RunLock(run):
        assert (tmp_path / ".r.lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".r.lock").exists()  # removed on release


def test_code_version_of_this_checkout_and_of_a_plain_folder(tmp_path):
    """The manifest's git commit: this checkout's HEAD; None outside a git checkout."""
    import subprocess
    from pathlib import Path

    from committee.app import provenance as job

    package = Path(job.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    got = job.code_version()
    if head.returncode == 0:
        assert got["git_commit"] == head.stdout.strip()
        assert isinstance(got["git_dirty"], bool)
    (tmp_path / "committee").mkdir()
    assert job.code_version(tmp_path / "committee") == {"git_commit": None, "git_dirty": None}
