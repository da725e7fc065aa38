"""Bad input: each case is one line on stderr naming the value, exit status 2, no Ray cluster
started and nothing written. (Checks that need a cluster are in test_run_integration.py.)"""

from __future__ import annotations

from committee.app import cli


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("committee: ")]


def _fake_cluster(monkeypatch, cpus=2.0):
    """No Ray: connect does nothing, the cluster is one node of ``cpus`` CPUs."""
    from committee.distributed import cluster

    monkeypatch.setattr(cluster, "connect", lambda *args, **kwargs: None)
    monkeypatch.setattr(cluster, "cluster_nodes", lambda: [{"CPU": cpus}])


def test_an_internal_value_error_during_a_run_exits_1_with_its_traceback_logged(
    monkeypatch, capsys, tmp_path
):
    """A ValueError from the work itself (here, in place of training and scoring) is a
    failure, not bad input: exit 1, one line naming it and where its traceback is."""
    from committee.distributed import driver as orchestration

    _fake_cluster(monkeypatch)

    def broken(*args, **kwargs):
        raise ValueError("internal shapes disagree")

    monkeypatch.setattr(orchestration, "run_members", broken)
    code = cli.main(
        [
            "run",
            "--output",
            str(tmp_path),
            "--run-name",
            "broken",
            "--limit-train",
            "100",
            "--epochs",
            "1",
        ]
    )
    # The run's progress lines ([committee] ...) go to stderr too; the error is one line.
    err = _error_lines(capsys.readouterr().err)
    assert code == 1, err
    assert len(err) == 1, err
    err = err[0]
    log = tmp_path / "broken" / "logs" / "error.log"
    assert "unexpected ValueError: internal shapes disagree" in err and str(log) in err
    assert "Traceback" in log.read_text() and "in broken" in log.read_text()


def test_an_unexpected_os_error_is_logged_too(monkeypatch, capsys, tmp_path):
    """An OSError other than a full disk is a failure as well: exit 1, traceback logged."""
    from committee.distributed import driver as orchestration

    _fake_cluster(monkeypatch)

    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/else")

    monkeypatch.setattr(orchestration, "run_members", broken)
    code = cli.main(
        [
            "run",
            "--output",
            str(tmp_path),
            "--run-name",
            "denied",
            "--limit-train",
            "100",
            "--epochs",
            "1",
        ]
    )
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1, err  # PermissionError keeps its one-line exit 2

    def io_error(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(orchestration, "run_members", io_error)
    code = cli.main(
        [
            "run",
            "--output",
            str(tmp_path),
            "--run-name",
            "io",
            "--limit-train",
            "100",
            "--epochs",
            "1",
        ]
    )
    err = _error_lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1, err
    assert str(tmp_path / "io" / "logs" / "error.log") in err[0]


def test_a_placement_the_cluster_cannot_host_is_still_a_usage_error(monkeypatch, capsys, tmp_path):
    _fake_cluster(monkeypatch, cpus=2.0)
    code = cli.main(
        [
            "run",
            "--output",
            str(tmp_path),
            "--run-name",
            "big",
            "--limit-train",
            "100",
            "--cpus-per-member",
            "8",
        ]
    )
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1, err
    assert "no node" in err[0] or "cpus-per-member" in err[0]
    assert "error.log" not in err[0]
