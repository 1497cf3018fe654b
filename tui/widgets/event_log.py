"""The event log pane: one line per engine event worth reading, and a failure's traceback tail."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from engine.api import (
    EditWarning,
    EngineReady,
    EngineStopped,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobQueued,
    JobStarted,
    StageFinished,
    StageStarted,
)

from ..formatting import clean, format_clock, format_duration, format_psnr, model_name, plural, shorten, stage_label

LOG_TAIL_BYTES = 4096
LOG_TAIL_LINES = 12
MAX_ENTRIES = 2000
PROMPT_WIDTH = 36


class EventLog(RichLog):
    """Keeps its entries, and wraps them again when its width changes (RichLog renders a line once,
    at the width of the moment)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_ENTRIES * 2, min_width=20, wrap=True, markup=False, auto_scroll=True)
        self._entries: deque[Text] = deque(maxlen=MAX_ENTRIES)
        self._wrapped_at = 0
        self._stale = False

    def add(self, text: Text) -> None:
        self._entries.append(text)
        self.write(text)
        if not self.size.width:  # hidden: written at the minimum width, wrapped again when shown
            self._stale = True

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        width = event.size.width
        if width and ((self._wrapped_at and width != self._wrapped_at) or self._stale):
            self._stale = False
            self.clear()
            for text in self._entries:
                self.write(text)
            self.scroll_end(animate=False)
        self._wrapped_at = width or self._wrapped_at

    def note(self, message: str, style: str = "dim") -> None:
        """A line from the app itself (not an engine event)."""
        self.add(Text(message, style=style))

    def log_event(self, event: Event, prompt_of) -> None:
        line = self._describe(event, prompt_of)
        if line is None:
            return
        text, style = line
        self.add(Text.assemble((format_clock(event.time) + " ", "dim"), (text, style)))
        if isinstance(event, JobFailed) and event.log_path:
            self.add(Text(f"         log: {event.log_path}", style="dim"))
            for tail_line in _log_tail(event.log_path):
                self.add(Text("         " + clean(tail_line), style="dim"))

    def _describe(self, event: Event, prompt_of) -> tuple[str, str] | None:
        match event:
            case StageStarted(stage="load"):
                return "loading the model …", "bold"
            case StageFinished(stage="load"):
                return None
            case EngineReady():
                return (f"model ready: {model_name(event.model)} on {event.device} ({event.dtype}) in "
                        f"{format_duration(event.seconds)}", "bold green")
            case EngineStopped():
                return f"engine: {clean(event.reason)}", "bold red" if event.fault else "dim"
            case JobQueued():
                return f"queued {event.job_id} “{shorten(event.prompt, PROMPT_WIDTH)}”", ""
            case JobStarted():
                where = f" on {event.device}" if event.device else ""
                return f"started {event.job_id}{where} “{shorten(prompt_of(event.job_id), PROMPT_WIDTH)}”", ""
            case StageStarted():
                steps = f", {event.total_steps} steps" if event.total_steps else ""
                return f"{stage_label(event.stage)} started ({plural(len(event.job_ids), 'job')}{steps})", "dim"
            case StageFinished():
                how = "from the cache" if event.cached else f"in {format_duration(event.seconds)}"
                return f"{stage_label(event.stage)} done {how}", "dim"
            case EditWarning():
                return f"warning: {clean(event.message)}", "yellow"
            case JobFinished():
                psnr = format_psnr(event.metrics)
                return f"done {event.job_id}: round-trip PSNR {psnr} → {Path(event.output_dir).name}", "green"
            case JobFailed():
                return f"failed {event.job_id}: {clean(event.reason)}", "bold red"
            case JobCancelled():
                return f"cancelled {event.job_id}", "yellow"
        return None


def _log_tail(path: str) -> list[str]:
    """The last lines of a failure's log (its traceback), read from the end of the file."""
    try:
        with open(Path(path), "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
