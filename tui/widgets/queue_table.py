"""The queue: one row per job (source, prompt, status with the stage counter, the current stage's progress
or time spent, the whole job's ETA); marked rows (for the bulk actions) show a ● before their source."""

from __future__ import annotations

from rich.text import Text

from engine.api import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, JobRecord

from ..formatting import clean, format_duration, format_eta, progress_bar, source_name, stage_label
from ..progress import JOB_STAGES, JobProgress
from .flex_table import FlexTable

MARK = "● "
STATUS_STYLES = {QUEUED: "dim", RUNNING: "bold $accent", DONE: "bold $success", FAILED: "bold $error",
                 CANCELLED: "dim italic", INTERRUPTED: "$warning", "cancelling": "bold $warning"}


class QueueTable(FlexTable):
    COLUMNS = (("source", "source", 12), ("prompt", "prompt", 0), ("status", "status", 11),
               ("progress", "progress", 21), ("eta", "ETA", 6))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.job_eta = lambda progress: (None, False)  # (seconds left in the job, exact?): the app's tracker
        self.marked: set[str] = set()  # job ids marked for a bulk action (space)

    def show_jobs(self, records: list[JobRecord], progress_of) -> None:
        self.show_rows([(r.id, self._cells(r, progress_of(r.id))) for r in records])

    def show_progress(self, record: JobRecord, progress: JobProgress | None) -> None:
        cells = self._cells(record, progress)
        self.set_cells(record.id, {"status": cells[2], "progress": cells[3], "eta": cells[4]})

    def _cells(self, record: JobRecord, progress: JobProgress | None) -> list[Text | str]:
        label = record.status
        if record.status == RUNNING and progress is not None:
            if progress.cancelling:
                label = "cancelling"
            elif progress.stage_number:
                label = f"running {progress.stage_number}/{len(JOB_STAGES)}"
        status = Text(label, style=self._style(label if label == "cancelling" else record.status))
        source = (Text(MARK + source_name(record.source), style=theme_style(self, "bold $accent"), no_wrap=True,
                       overflow="ellipsis") if record.id in self.marked else source_name(record.source))
        return [source, clean(record.prompt), status, *self._progress(record, progress)]

    def _style(self, status: str) -> str:
        return theme_style(self, STATUS_STYLES.get(status, ""))

    def _progress(self, record: JobRecord, progress: JobProgress | None) -> tuple[Text | str, str]:
        if record.status == RUNNING and progress is not None and progress.stage:
            label = stage_label(progress.stage)
            seconds, exact = self.job_eta(progress)
            eta = format_eta(seconds) + ("" if exact or seconds is None else "+")
            if progress.total and progress.step < progress.total:
                bar = progress_bar(progress.step, progress.total, width=4)
                return Text(f"{label:<10} {bar} {progress.step}/{progress.total}"), eta
            # A stage without steps (or past its last step: the decodes of the round trip): the time spent.
            return Text(f"{label:<10} {format_eta(progress.stage_elapsed())}"), eta
        if record.status == RUNNING:
            return Text("starting …", style="dim"), ""
        if record.status == DONE:
            total = sum(record.timings.values()) if record.timings else None
            return Text(f"✓ {format_duration(total)}".strip()), ""
        if record.status in (FAILED, INTERRUPTED) and record.error:
            return Text(clean(record.error), style="dim"), ""
        return "", ""


def theme_style(widget, style: str) -> str:
    """Turn ``bold $accent`` into a Rich style with the theme's colour."""
    variables = widget.app.theme_variables
    return " ".join(variables.get(part[1:], "") if part.startswith("$") else part for part in style.split())
