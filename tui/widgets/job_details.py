"""One job in full: prompt, source, status, parameters (changed and key ones), stage timings, metrics
and, for a finished job, the paths of its files."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.api import METRIC_LABELS, OUTPUT_FILES, RESULT_VIDEOS, STAGES, JobRecord

from ..formatting import (
    clean,
    format_duration,
    format_timestamp,
    param_rows,
    result_approximations,
    stage_label,
)
from ..progress import JobProgress
from .queue_table import theme_style

EXTRA_FILES = (OUTPUT_FILES["contact_sheet"], OUTPUT_FILES["job"])


class JobDetails(VerticalScroll):
    """Scrollable details of one job; :meth:`show` replaces them."""

    def __init__(self, *, id: str | None = None, placeholder: str = "No job selected.") -> None:
        super().__init__(id=id)
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        yield Static(Text(self.placeholder, style="dim"), classes="details-body")

    def show(self, record: JobRecord | None, progress: JobProgress | None = None, files: bool = False) -> None:
        body = self.query_one(".details-body", Static)
        body.update(self._render_job(record, progress, files) if record else Text(self.placeholder, style="dim"))

    def _render_job(self, record: JobRecord, progress: JobProgress | None, files: bool) -> RenderableType:
        accent, error, muted = (theme_style(self, s) for s in ("bold $accent", "$error", "dim"))
        parts: list[RenderableType] = [Text(clean(record.prompt), style="bold")]
        facts = _grid()
        facts.add_row("source", Text(clean(record.source), overflow="fold"))
        facts.add_row("status", f"{record.status} · id {record.id}")
        if record.finished and record.status != "queued":
            facts.add_row("finished", format_timestamp(record.finished))
        approximate = result_approximations(record.output_dir)
        if approximate:
            facts.add_row("linear layers", Text(approximate, style=error))
        parts.append(facts)
        if record.error:
            parts.append(Text(clean(record.error), style=error))
        if record.log_path:
            parts.append(Text(f"log: {clean(record.log_path)}", style=muted, overflow="fold"))
        if record.metrics:
            parts.append(_heading("PSNR"))
            metrics = _grid()
            for key, label in METRIC_LABELS.items():
                if key in record.metrics:
                    metrics.add_row(label, f"{record.metrics[key]:.2f} dB")
            parts.append(metrics)
        parts.append(_heading("parameters"))
        params = _grid()
        for name, value, changed in param_rows(record.params):
            params.add_row(name, Text(clean(value), style=accent if changed else muted))
        parts.append(params)
        timings = dict(record.timings) or (dict(progress.timings) if progress else {})
        if timings:
            cached = progress.cached if progress else set()
            parts.append(_heading("stage timings"))
            table = _grid()
            for stage in STAGES:
                if stage in timings:
                    note = " (cached)" if stage in cached else ""
                    table.add_row(stage_label(stage), format_duration(timings[stage]) + note)
            table.add_row(Text("total", style="bold"), Text(format_duration(sum(timings.values())), style="bold"))
            parts.append(table)
        if files and record.output_dir:
            parts.append(_heading("files"))
            folder = Path(record.output_dir)
            for name in (*RESULT_VIDEOS.values(), *EXTRA_FILES):
                parts.append(Text(clean(str(folder / name)), overflow="fold"))
        return Group(*parts)


def _grid() -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    return table


def _heading(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")
