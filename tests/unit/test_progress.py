"""The live display (no Ray): plain lines when not a terminal, bars when it is, member logs."""

from __future__ import annotations

import io

from committee.app.progress import Display, duration, epoch_line

EPOCH = {
    "member": "model1",
    "kind": "epoch",
    "epoch": 2,
    "planned": 5,
    "seconds": 75.0,
    "metrics": {"accuracy": 0.81234, "val_accuracy": 0.8, "loss": 0.5},
}


def test_duration_and_epoch_line():
    assert [duration(s) for s in (5, 75, 3700)] == ["5 s", "1 min 15 s", "1 h 1 min"]
    assert epoch_line(EPOCH) == (
        "[model1] epoch 2/5: accuracy 0.8123, val_accuracy 0.8000, 75.0 s/epoch, ETA 3 min 45 s"
    )


def test_plain_lines_without_a_terminal_and_every_line_in_the_member_log(tmp_path):
    stream = io.StringIO()
    display = Display(["model1", "model2"], log_dir=tmp_path / "logs", stream=stream)
    assert not display.live
    display.message("[committee] placement")
    display.event(EPOCH)
    display.event({"member": "model2", "kind": "line", "text": "[model2] resuming after epoch 1"})
    display.close()
    out = stream.getvalue()
    assert out.splitlines() == [
        "[committee] placement",
        epoch_line(EPOCH),
        "[model2] resuming after epoch 1",
    ]
    assert "\x1b" not in out
    assert (tmp_path / "logs" / "model1.log").read_text() == epoch_line(EPOCH) + "\n"
    assert (tmp_path / "logs" / "model2.log").read_text() == "[model2] resuming after epoch 1\n"


def test_bars_on_a_terminal_show_progress_and_warnings_only(tmp_path):
    stream = io.StringIO()
    display = Display(["model1", "model2"], log_dir=tmp_path / "logs", stream=stream, live=True)
    display.event(EPOCH)
    display.event({"member": "model2", "kind": "line", "text": "[model2] plan: 4 epochs"})
    display.event(
        {
            "member": "model2",
            "kind": "line",
            "text": "[model2] warning: checkpoint x could not be loaded",
        }
    )
    display.close()
    out = stream.getvalue()
    assert (
        "model1   epoch 2/5" in out and "acc 0.8123 val 0.8000, 75 s/epoch, ETA 3 min 45 s" in out
    )
    assert "[model2] warning: checkpoint x could not be loaded" in out
    assert "plan: 4 epochs" not in out  # in the member's log only
    assert "plan: 4 epochs" in (tmp_path / "logs" / "model2.log").read_text()


def test_phases_show_on_the_bars_before_the_first_epoch(tmp_path):
    """Between the start and a member's first epoch its bar says what is happening (not
    "0/? epochs | starting"); plain output keeps to its lines, the member's log has them."""
    from committee.app.progress import STARTING

    stream = io.StringIO()
    display = Display(["model1", "model2"], log_dir=tmp_path / "logs", stream=stream, live=True)
    assert STARTING in stream.getvalue() and "starting" != STARTING
    display.event({"member": "model1", "kind": "phase", "text": "building and compiling"})
    bar = display.bars["model1"]
    assert bar.postfix[0] == "building and compiling"
    assert "model1   epoch 0/? |" in str(bar) and "building and compiling" in str(bar)
    assert display.bars["model2"].postfix[0] == STARTING
    display.event(EPOCH)  # the epoch's figures replace the phase
    assert bar.postfix[0].startswith("acc 0.8123")
    display.close()
    assert "[model1] building and compiling" in (tmp_path / "logs" / "model1.log").read_text()

    plain = io.StringIO()
    display = Display(["model1"], log_dir=tmp_path / "plain", stream=plain)
    display.event({"member": "model1", "kind": "phase", "text": "loading the data"})
    display.close()
    assert plain.getvalue() == ""
    assert (tmp_path / "plain" / "model1.log").read_text() == "[model1] loading the data\n"


def test_a_worker_sends_its_phases_to_the_display_queue():
    from committee.distributed.worker import phase_sender

    class Queue:
        def __init__(self):
            self.items = []

        def put_nowait(self, item):
            self.items.append(item)

    queue = Queue()
    phase_sender(queue, "model1")("loading the data")
    assert queue.items == [{"member": "model1", "kind": "phase", "text": "loading the data"}]
    phase_sender(None, "model1")("nothing to tell")  # no display: nothing happens


def test_a_member_name_never_leaves_the_log_folder(tmp_path):
    display = Display(["../x"], log_dir=tmp_path / "logs", stream=io.StringIO())
    display.event({"member": "../x", "kind": "line", "text": "hi"})
    assert not (tmp_path / "x.log").exists() and not (tmp_path / "logs").exists()


FORGED = "x.png\n[committee] all members finished\x1b[2K\u2028"


def test_a_name_holding_a_newline_cannot_forge_a_line(tmp_path, capsys):
    """A logged file name with a newline or escape codes (an input of `committee predict`)
    is one line, its control characters escaped as repr writes them."""
    import logging

    from committee import log
    from committee.app import cli

    log.setup()
    log.logger.info(f"reading {FORGED}")
    log.logger.info(f"[m] reading {FORGED}", extra=log.MEMBER)
    sent: list[str] = []
    handler = log.Forward(sent.append)
    handler.handle(logging.makeLogRecord({"msg": f"reading {FORGED}"}))
    captured = capsys.readouterr()
    for text in (captured.err, captured.out, sent[0] + "\n"):
        assert text.count("\n") == 1, text
        assert "x.png\\n[committee] all members finished\\x1b[2K\\u2028" in text
    assert cli.main(["predict", str(tmp_path / FORGED), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\\n[committee] all members finished\\x1b" in err, err
