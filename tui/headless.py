"""Event subscribers for the headless command: rich progress bars, or one JSON object per line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine.api import (
    PSNR_ROUND_TRIP,
    EditWarning,
    EngineReady,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    StageFinished,
    StageStarted,
    StepProgress,
    event_to_dict,
)


class JsonLinesPrinter:
    """``--events jsonl``: every event as one JSON object per line, flushed at once (for scripts)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.closed = False  # the reader went away (``| head -1``): the edit goes on, unprinted

    def __call__(self, event: Event) -> None:
        if self.closed:
            return
        try:
            self.stream.write(json.dumps(event_to_dict(event)) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """Stop writing, and point the stream's descriptor at /dev/null so that nothing (not even
        Python's flush at exit) raises again."""
        self.closed = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)

    def __enter__(self) -> JsonLinesPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_gone()


class ProgressBars:
    """One rich progress bar per stage: stage, step i/n, it/s, elapsed and ETA."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description:<11}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, transient=False)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        match event:
            case StageStarted(stage=stage, total_steps=total):
                self.tasks[stage] = self.progress.add_task(stage.replace("_", " "), total=total or 1, rate="")
            case StepProgress(stage=stage) if stage in self.tasks:
                self.progress.update(self.tasks[stage], completed=event.step, total=event.total,
                                     rate=f"{event.it_per_s:.2f} it/s")
            case StageFinished(stage=stage) if stage in self.tasks:
                task = self.tasks[stage]
                note = "cached" if event.cached else f"{event.seconds:.1f} s"
                self.progress.update(task, completed=self.progress.tasks[task].total, rate=note)
            case EngineReady():
                self.console.print(f"[green]model ready[/] {event.model} on {event.device} ({event.dtype}) "
                                   f"in {event.seconds:.1f} s")
            case EditWarning():
                self.console.print(f"[yellow]warning:[/] {event.message}")
            case JobFailed():
                self.console.print(f"[red]failed[/] {event.job_id}: {event.reason}")
            case JobCancelled():
                self.console.print(f"[yellow]cancelled[/] {event.job_id}")
            case JobFinished(metrics=metrics):
                self.console.print(
                    f"[green]done[/] {event.job_id}: round-trip PSNR "
                    f"{metrics.get(PSNR_ROUND_TRIP, float('nan')):.2f} dB")
