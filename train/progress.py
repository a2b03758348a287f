"""Progress of a training epoch on the terminal: a rich progress bar whose running loss is read
from a pinned host copy, so showing it never waits for the GPU."""
from __future__ import annotations

import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def console_for(enabled: bool) -> Console:
    # log lines carry the time, not the file:line of the logging call
    return Console(stderr=True, quiet=not enabled, log_path=False)


def progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=not enabled, transient=True)


class LossDisplay:
    """Advances the bar each step; every ``every`` steps shows the mean CE of the epoch so far,
    from a non-blocking copy of the running sums made ``every`` steps earlier."""

    def __init__(self, acc: torch.Tensor, progress: Progress, task, every: int = 25):
        self.acc, self.progress, self.task, self.every = acc, progress, task, every
        self.enabled = not progress.disable
        pinned = acc.device.type == "cuda"
        self.host = torch.zeros(acc.shape, dtype=acc.dtype, pin_memory=pinned)
        self.event = torch.cuda.Event() if pinned else None

    def advance(self, i: int) -> None:
        if not self.enabled:
            return
        if i % self.every:
            self.progress.update(self.task, advance=1)
            return
        info = None
        if i and (self.event is None or self.event.query()):
            info = f"loss {float(self.host[0]) / max(1.0, float(self.host[1])):.4f}"
        self.host.copy_(self.acc, non_blocking=self.event is not None)
        if self.event is not None:
            self.event.record()
        self.progress.update(self.task, advance=1, **({"info": info} if info else {}))
