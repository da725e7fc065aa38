"""The driver's live display of the members' training (no Ray here).

Workers send events (plain dicts) through a Ray queue; :class:`Display` shows them:

- on a terminal, one tqdm bar per member (epoch k of the planned epochs, training and
  validation accuracy, seconds per epoch, ETA), with other lines printed above the bars;
- otherwise (job logs, ``ray job submit``, a file), one plain line per member per epoch and
  no ANSI codes.

Every line about a member is also appended to ``logs/<member>.log`` in the run folder.

:func:`displaying` puts the driver's own lines (``committee.log.logger``) above the bars.

Events: ``{"member": name, "kind": "epoch", "epoch": k, "planned": n, "seconds": s,
"metrics": {...}}`` after each epoch (``seconds``: the recent pace per epoch),
``{"member": name, "kind": "phase", "text": "building the model"}`` when a member starts a
step that is not an epoch (from the driver and the worker: its Ray Train worker starting,
importing Keras, loading the data or a checkpoint, building and compiling the model, the
first epoch's compilation, predicting), shown on its bar until the next event (plain
output only logs it), and
``{"member": name, "kind": "line", "text": "..."}`` for anything else the member says.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TextIO

from committee.log import TERMINAL
from committee.rundir import door

STARTING = "waiting for its Ray Train worker"  # each bar's text until its member's first event


def duration(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``; ``3700`` -> ``"1 h 1 min"``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def epoch_line(event: dict) -> str:
    """One plain line for an epoch event."""
    m = event["metrics"]
    left = (event["planned"] - event["epoch"]) * event["seconds"]
    return (
        f"[{event['member']}] epoch {event['epoch']}/{event['planned']}: accuracy "
        f"{m.get('accuracy', float('nan')):.4f}, val_accuracy "
        f"{m.get('val_accuracy', float('nan')):.4f}, {event['seconds']:.1f} s/epoch, "
        f"ETA {duration(left)}"
    )


class Display:
    """Shows member events and driver messages; see the module docstring.

    ``live``: bars (default: whether ``stream`` is a terminal). ``log_dir``: where each
    member's lines are appended (``<log_dir>/<member>.log``); None writes no logs.
    """

    def __init__(
        self,
        members: list[str],
        log_dir: Path | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
    ):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.log_dir = log_dir
        self.bars = {}
        if self.live:
            from tqdm import tqdm

            self.bars = {
                name: tqdm(
                    total=None,
                    desc=f"{name:<8}",
                    unit="epoch",
                    position=i,
                    file=self.stream,
                    leave=True,
                    dynamic_ncols=True,
                    postfix=[STARTING],
                    bar_format="{desc} epoch {n_fmt}/{total_fmt} |{bar:20}| {postfix[0]}",
                )
                for i, name in enumerate(members)
            }

    def message(self, text: str) -> None:
        """A line from the driver (placement, a member done, a warning)."""
        if self.bars:
            next(iter(self.bars.values())).write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def event(self, event: dict) -> None:
        name = event.get("member", "?")
        if event.get("kind") == "epoch":
            line = epoch_line(event)
            bar = self.bars.get(name)
            if bar is not None:
                m = event["metrics"]
                left = (event["planned"] - event["epoch"]) * event["seconds"]
                bar.total = event["planned"]
                bar.n = event["epoch"]
                bar.postfix[0] = (
                    f"acc {m.get('accuracy', float('nan')):.4f} val "
                    f"{m.get('val_accuracy', float('nan')):.4f}, "
                    f"{event['seconds']:.0f} s/epoch, ETA {duration(left)}"
                )
                bar.refresh()
            else:
                print(line, file=self.stream, flush=True)
        elif event.get("kind") == "phase":
            text = str(event.get("text", ""))
            line = f"[{name}] {text}"
            bar = self.bars.get(name)
            if bar is not None:  # plain output (job logs) keeps to its line per epoch
                bar.postfix[0] = text
                bar.refresh()
        else:
            line = str(event.get("text", ""))
            if " warning: " in line or not self.bars:
                self.message(line)
        self._append(name, line)

    def _append(self, name: str, line: str) -> None:
        if self.log_dir is None or not name.replace("_", "").replace("-", "").isalnum():
            return
        # through the run folder's door: a link or a FIFO as the log is refused, never followed
        with door.open_append(self.log_dir / f"{name}.log", self.log_dir.parent) as log:
            log.write((line.rstrip("\n") + "\n").encode("utf-8"))

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars = {}


@contextlib.contextmanager
def displaying(display: Display | None):
    """Show the driver's log lines on ``display`` (or None) for the block; close it after."""
    TERMINAL.display = display
    try:
        yield display
    finally:
        TERMINAL.display = None
        if display is not None:
            display.close()
