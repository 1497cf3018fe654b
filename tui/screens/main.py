"""The main screen: the devices (when there are several), the queue over the selected job's parameters
and timings and the event log."""

from __future__ import annotations

import dataclasses

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Label

from engine.api import (
    QUEUED,
    REQUEUEABLE,
    RUNNING,
    EngineReady,
    EngineStopped,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobQueued,
    JobRecord,
    JobStarted,
    StageFinished,
    StageStarted,
    StepProgress,
)

from ..formatting import clean, format_eta, shorten
from ..widgets.adaptive_footer import AdaptiveFooter
from ..widgets.devices_panel import DevicesPanel
from ..widgets.engine_header import EngineHeader
from ..widgets.event_log import EventLog
from ..widgets.job_details import JobDetails
from ..widgets.queue_table import QueueTable
from .queue_bulk import BULK_BINDINGS, FINISHED, BulkQueueActions

RELOAD_EVENTS = (JobQueued, JobStarted, JobFinished, JobFailed, JobCancelled, EngineStopped, EngineReady)
PROGRESS_EVENTS = (StageStarted, StepProgress, StageFinished)


class MainScreen(BulkQueueActions, Screen):
    # Priority bindings run in the app's own message loop as the key arrives, so a screen opened by one
    # is mounted and focused before the next key is routed: text typed right after n lands in the form.
    # (This screen has no text field for them to shadow.)
    BINDINGS = [dataclasses.replace(binding, priority=True) for binding in [
        Binding("n", "new_edit", "New", tooltip="New edit: a clip, prompts and parameters"),
        Binding("c", "duplicate", "Copy", tooltip="Duplicate the selected job into the form, to tweak it"),
        Binding("x", "cancel_job", "Cancel",
                tooltip="Cancel the selected or marked jobs (a running one stops after its step)"),
        Binding("r", "requeue", "Requeue", tooltip="Re-queue the selected failed, cancelled or interrupted job"),
        Binding("K,shift+up", "move(-1)", "Move", key_display="K/J", tooltip="Move the selected job up the queue"),
        Binding("J,shift+down", "move(1)", "Down", show=False, tooltip="Move the selected job down the queue"),
        Binding("p", "pause", "Pause", tooltip="Pause the queue (the running job finishes)"),
        Binding("p", "resume", "Resume", tooltip="Resume the queue"),
        Binding("delete", "dismiss_job", "Dismiss", key_display="del",
                tooltip="Remove the selected or marked finished jobs from the queue (results stay in the history)"),
        Binding("h", "history", "History", tooltip="Browse finished results"),
        Binding("d", "toggle_details", "Details", tooltip="Show or hide the job details pane"),
        # Before the bulk keys: at 80 columns the footer cuts the last ones, and Quit must show.
        Binding("q", "quit_app", "Quit", tooltip="Quit (a running job stops after its current step)"),
        *BULK_BINDINGS,
    ]]

    def __init__(self) -> None:
        super().__init__(id="main")
        self._records: dict[str, JobRecord] = {}
        self._early_notes: list[tuple[str, str]] | None = []  # notes from before this screen was mounted
        self.init_bulk()

    def compose(self) -> ComposeResult:
        yield EngineHeader()
        yield DevicesPanel()
        with Vertical(id="queue-pane"):
            yield QueueTable(id="queue")
            yield Label("The queue is empty: press n for a new edit.", id="queue-empty")
            yield Label("", id="queue-reason", markup=False)  # the selected job's error, whole
        with Horizontal(id="main-bottom"):
            yield JobDetails(id="details", placeholder="Select a job to see its parameters and timings.")
            yield EventLog(id="log")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.query_one("#queue-pane").border_title = "Queue"
        self.query_one("#details").border_title = "Job"
        self.query_one("#log").border_title = "Events"
        self.app.engine_events.subscribe(self, self._on_engine_news)
        self.app.store_changed.subscribe(self, lambda _: self.reload())
        log = self.query_one(EventLog)
        log.note("n new edit · h history · ctrl+p every command · q quit")
        for message, style in self._early_notes:
            log.note(message, style)
        self._early_notes = None
        self.query_one(QueueTable).job_eta = lambda progress: self.app.tracker.job_eta(progress)
        self.reload()
        self.query_one(QueueTable).focus()
        self.set_interval(1.0, self._tick)

    def note(self, message: str, style: str = "dim") -> None:
        """A line of the app's own in the event log."""
        if self._early_notes is not None:
            self._early_notes.append((message, style))
        else:
            self.query_one(EventLog).note(message, style)

    # -- keeping up with the engine ------------------------------------------------------------

    def _on_engine_news(self, event: Event) -> None:
        self.query_one(EventLog).log_event(event, self.app.prompt_of)
        if isinstance(event, RELOAD_EVENTS):
            self.reload()
        elif isinstance(event, PROGRESS_EVENTS):
            table = self.query_one(QueueTable)
            for job_id in event.job_ids:
                record = self._records.get(job_id)
                if record is not None:
                    table.show_progress(record, self.app.tracker.get(job_id))
            if isinstance(event, StageFinished) and self.selected_id in event.job_ids:
                self._show_details()

    def _tick(self) -> None:
        """Once a second: the running rows' time spent and ETAs, the queue's ETA."""
        table = self.query_one(QueueTable)
        for record in self._records.values():
            if record.status == RUNNING:
                table.show_progress(record, self.app.tracker.get(record.id))
        self._show_queue_eta()

    def _show_queue_eta(self) -> None:
        tracker = self.app.tracker
        running = [r for r in self._records.values() if r.status == RUNNING]
        queued = [r for r in self._records.values() if r.status == QUEUED]
        title = "Queue"
        if running or queued:
            left, exact = 0.0, True
            for record in running:
                progress = tracker.get(record.id)
                seconds, job_exact = tracker.job_eta(progress) if progress else (None, False)
                left, exact = max(left, seconds or 0.0), exact and job_exact
            devices = max(1, self.app.device_counts[0] - self.app.device_counts[2])
            for record in queued:
                seconds, job_exact = tracker.fresh_job_estimate(record.params.num_inference_steps)
                left, exact = left + seconds / devices, exact and job_exact
            counts = " · ".join(f"{n} {what}" for n, what in ((len(running), "running"), (len(queued), "queued")) if n)
            when = format_eta(left) + ("" if exact else "+")
            title = f"Queue · {counts} · all done in ~{when}" if left else f"Queue · {counts}"
        self.query_one("#queue-pane").border_title = title

    def reload(self) -> None:
        records = self.app.queue_records()
        self._records = {r.id: r for r in records}
        self.prune_marks()
        self.query_one(QueueTable).show_jobs(records, self.app.tracker.get)
        empty = not records and self.app.store is not None
        table = self.query_one(QueueTable)
        self.query_one("#queue-empty").display = empty
        table.display = not empty
        if not empty and self.focused is None:  # hiding the empty table took its focus
            table.focus()
        self._show_details()
        self._show_queue_eta()
        self.refresh_bindings()

    @property
    def selected_id(self) -> str | None:
        return self.query_one(QueueTable).selected_key

    @property
    def selected(self) -> JobRecord | None:
        job_id = self.selected_id
        return self._records.get(job_id) if job_id else None

    def _show_details(self) -> None:
        record = self.selected
        self.query_one(JobDetails).show(record, self.app.tracker.get(record.id) if record else None)
        reason = self.query_one("#queue-reason", Label)
        error = record.error if record is not None and record.status in FINISHED else None
        reason.update(f"{record.status}: {clean(error)}" if error else "")
        reason.display = bool(error)

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_details()
        self.refresh_bindings()

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        bulk = self.bulk_applicable(action)
        if bulk is not None:
            return bulk
        record = self.selected
        status = record.status if record else None
        engine_open = self.app.engine is not None
        applicable = {
            "new_edit": True,
            "duplicate": record is not None,
            "requeue": status in REQUEUEABLE,
            "move": status == QUEUED,
            "pause": engine_open and not self.app.queue_paused,
            "resume": engine_open and self.app.queue_paused,
        }
        return applicable.get(action, True)

    async def action_new_edit(self) -> None:
        from .new_edit import NewEditScreen

        await open_screen(self.app, NewEditScreen.for_app(self.app), self._queued)

    async def action_duplicate(self) -> None:
        from .new_edit import NewEditScreen

        if self.selected is not None:
            await open_screen(self.app, NewEditScreen.for_app(self.app, self.selected), self._queued)

    def _queued(self, records: list[JobRecord] | None) -> None:
        """The form closed; after queuing, the first new job is selected."""
        if records:
            self.reload()
            self.query_one(QueueTable).select_key(records[0].id)

    async def action_history(self) -> None:
        from .history import HistoryScreen

        await open_screen(self.app, HistoryScreen())

    def action_requeue(self) -> None:
        record = self.selected
        if record is not None and self.app.engine is not None and self.app.engine.requeue(record.id):
            self.notify(f"“{shorten(record.prompt, 50)}” is queued again.", title="Re-queued", markup=False)
        self.reload()

    def action_move(self, offset: int) -> None:
        record = self.selected
        if record is not None and self.app.engine is not None and self.app.engine.move(record.id, offset):
            self.reload()

    def action_pause(self) -> None:
        self.app.pause_queue()
        self.notify("Nothing new starts; a running job finishes. Press p to resume.", title="Queue paused")
        self.refresh_bindings()

    def action_resume(self) -> None:
        self.app.resume_queue()
        self.notify("The queue runs again.", title="Queue resumed")
        self.refresh_bindings()

    async def action_quit_app(self) -> None:
        await self.app.action_quit()

    def action_toggle_details(self) -> None:
        self.toggle_class("-details-toggled")


async def open_screen(app, screen: Screen, callback=None) -> None:
    """Push ``screen`` and wait until it is mounted with its first field focused: called from a
    priority binding, the keys typed meanwhile wait in the app's queue and reach that field."""
    await app.push_screen(screen, callback)
    target = getattr(screen, "first_focus", lambda: None)()
    if target is not None and screen.focused is not target:
        screen.set_focus(target)
