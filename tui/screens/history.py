"""The history: every finished edit, searchable and filtered (history_query), sorted or grouped by source
(s); the selected result's details and its preview (v: frames, A/B, difference, the variants of its
source side by side, the contact sheet), larger (z) and playing (space)."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label

from engine.api import (
    DONE,
    OUTPUT_FILES,
    PSNR_EDITED,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobRecord,
    delete_result,
    variant_key,
)

from ..formatting import clean, format_psnr, format_short_timestamp, plural, shorten, source_name
from ..history_query import BY_SOURCE, FILTER_HELP, FINISHED_STATUSES, SORTS, arrange, parse_query, variants_of
from ..widgets.adaptive_footer import AdaptiveFooter
from ..widgets.engine_header import EngineHeader
from ..widgets.flex_table import FlexTable
from ..widgets.frame_preview import FramePreview
from ..widgets.job_details import JobDetails
from ..widgets.preview_views import VIEWS
from .confirm import ConfirmScreen

COMMAND = "cogedit-tui edit --from-job"


class ResultsTable(FlexTable):
    """Finished results; ← and → step the preview's frame while the list has the focus."""

    COLUMNS = (("finished", "finished", 11), ("prompt", "prompt", 0), ("source", "source", 12),
               ("edit", "edit dB", 7), ("psnr", "trip dB", 7))
    BINDINGS = [Binding("left", "screen.step(-1)", "Previous frame", show=False),
                Binding("right", "screen.step(1)", "Next frame", show=False)]


class ResultDeleted(Message):
    def __init__(self, record: JobRecord | None) -> None:
        super().__init__()
        self.record = record


class HistoryScreen(Screen):
    CSS_PATH = "history.tcss"
    BINDINGS = [
        # Priority: the search has the focus before the next key is routed, so "/zebra" typed fast all
        # lands in it (z and s are keys of this screen too); in the search, / types a slash.
        Binding("slash", "focus_search", "Search", key_display="/", priority=True,
                tooltip="Search prompts and sources, or filter: status:failed source:NAME after:DATE"),
        Binding("comma", "step(-1)", "Frame", key_display=",/.", tooltip="Preview the previous frame"),
        Binding("full_stop", "step(1)", "Next frame", show=False, tooltip="Preview the next frame"),
        Binding("space", "play", "Play", tooltip="Play or pause the preview (loops)"),
        Binding("v", "next_view", "View",
                tooltip="Next preview view: frames, A/B, difference, variants of the source, contact sheet"),
        Binding("z", "zoom", "Zoom", tooltip="Preview on the whole screen, or back"),
        Binding("s", "sort", "Sort", tooltip="Sort by: newest, oldest, edit PSNR, round-trip PSNR, prompt, "
                                             "source (its variants together)"),
        Binding("c", "duplicate", "Copy", tooltip="Duplicate this result's job into the form, to tweak it"),
        Binding("y", "copy_path", "Path", tooltip="Copy the result folder's path to the clipboard"),
        Binding("Y", "copy_command", "Command", key_display="Y",
                tooltip="Copy the command that runs this job again (--from-job) to the clipboard"),
        Binding("delete", "delete_result", "Delete", key_display="del", tooltip="Delete this result (asks first)"),
        Binding("d", "toggle_details", "Details", tooltip="Show or hide the result details pane"),
        Binding("escape", "back", "Back", tooltip="Back to the queue"),
    ]

    def __init__(self) -> None:
        super().__init__(id="history")
        self._records: dict[str, JobRecord] = {}  # the rows shown
        self._finished: list[JobRecord] = []  # every finished job (the variants come from here)
        self._shown: tuple | None = None
        self.sort = next(iter(SORTS))
        self.view = next(iter(VIEWS))

    def compose(self) -> ComposeResult:
        yield EngineHeader()
        yield Input(placeholder=f"search ( / ): {FILTER_HELP}", id="search", compact=True)
        yield Label("", id="search-problem", markup=False)
        yield Label("No finished edits yet: they appear here when a job is done.", id="history-empty",
                    markup=False)
        with Horizontal(id="history-top"):
            yield ResultsTable(id="results")
            yield JobDetails(id="result-details", placeholder="Select a result.")
        yield FramePreview(self.app.image_class, id="preview")
        yield AdaptiveFooter(always_compact=True)

    def on_mount(self) -> None:
        self.query_one("#preview").border_title = "Preview"
        self.query_one("#result-details").border_title = "Result"
        self.app.engine_events.subscribe(self, self._on_engine_news)
        self.app.store_changed.subscribe(self, lambda _: self.reload())  # opened after the history was
        self.reload()
        self.query_one(ResultsTable).focus()

    def _on_engine_news(self, event: Event) -> None:
        if isinstance(event, (JobFinished, JobFailed, JobCancelled)):
            self.reload()

    def reload(self) -> None:
        store = self.app.store
        search = self.query_one("#search", Input).value.strip()
        query = parse_query(search)
        self._finished = store.jobs(FINISHED_STATUSES) if store is not None else []
        records = arrange(self._finished, query, self.sort)
        self._records = {r.id: r for r in records}
        self.query_one(ResultsTable).show_rows(self._rows(records))
        problem = self.query_one("#search-problem", Label)
        problem.update("; ".join(query.problems))
        problem.display = bool(query.problems)
        empty = self.query_one("#history-empty")
        empty.display = not records
        if not records:
            empty.update(f"No finished edit matches “{clean(search)}”." if search
                         else "No finished edits yet: they appear here when a job is done.")
        self.query_one("#results").border_title = f"History · {plural(len(records), 'result')} · {self.sort}"
        self._show_selected()
        self.refresh_bindings()

    def _rows(self, records: list[JobRecord]) -> list[tuple[str, list]]:
        rows, previous = [], None
        for r in records:
            key = variant_key(r) if self.sort == BY_SOURCE else None
            follows = key is not None and key == previous  # another variant of the row above's source
            previous = key
            prompt = Text(("↳ " if follows else "") + clean(r.prompt), no_wrap=True, overflow="ellipsis")
            if r.status != DONE:
                prompt = Text.assemble((f"{r.status}: ", "italic"), prompt, no_wrap=True, overflow="ellipsis")
            rows.append((r.id, [format_short_timestamp(r.finished), prompt, "" if follows else source_name(r.source),
                                Text(format_psnr(r.metrics, PSNR_EDITED).replace(" dB", ""), justify="right"),
                                Text(format_psnr(r.metrics).replace(" dB", ""), justify="right")]))
        return rows

    @property
    def selected(self) -> JobRecord | None:
        key = self.query_one(ResultsTable).selected_key
        return self._records.get(key) if key else None

    def _show_selected(self) -> None:
        record = self.selected
        self.query_one(JobDetails).show(record, files=True)
        variants = [(clean(v.prompt), v.output_dir) for v in variants_of(record, self._finished)[1:]] if record else []
        shown = (record.id, record.output_dir, tuple(variants)) if record else None
        if shown != self._shown:  # a new selection: preview its first frame
            self._shown = shown
            missing = f"{record.status}: no result to preview" if record is not None and record.status != DONE else ""
            self.query_one(FramePreview).show_result(record.output_dir if record else None, variants, missing)

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_selected()
        self.refresh_bindings()

    @on(Input.Changed, "#search")
    def _search_changed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one(ResultsTable).focus()

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        record = self.selected
        if action in ("duplicate", "delete_result"):
            return record is not None
        if action in ("step", "play", "next_view", "copy_path", "copy_command"):
            return record is not None and bool(record.output_dir)
        return True

    def action_toggle_details(self) -> None:
        self.toggle_class("-details-toggled")

    def action_focus_search(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            search.insert_text_at_cursor("/")
            return
        self.remove_class("-zoomed")
        self.set_focus(search)  # now, not after the keys already queued

    def action_step(self, delta: int) -> None:
        self.query_one(FramePreview).step(delta)

    def action_play(self) -> None:
        self.query_one(FramePreview).toggle_play()

    def action_next_view(self) -> None:
        views = list(VIEWS)
        self.view = views[(views.index(self.view) + 1) % len(views)]
        preview = self.query_one(FramePreview)
        if self.view == "sheet":
            preview.stop_playing()
        preview.set_view(self.view)

    def action_zoom(self) -> None:
        self.toggle_class("-zoomed")

    def action_sort(self) -> None:
        orders = list(SORTS)
        self.sort = orders[(orders.index(self.sort) + 1) % len(orders)]
        self.reload()

    def action_back(self) -> None:
        if self.query_one("#search", Input).has_focus:
            self.query_one(ResultsTable).focus()
        elif self.has_class("-zoomed"):
            self.remove_class("-zoomed")
        else:
            self.query_one(FramePreview).stop_playing()
            self.dismiss()

    def action_duplicate(self) -> None:
        from .new_edit import NewEditScreen

        if self.selected is not None:
            self.app.push_screen(NewEditScreen.for_app(self.app, self.selected))

    def action_copy_path(self) -> None:
        record = self.selected
        if record is not None and record.output_dir:
            self.app.copy_to_clipboard(record.output_dir)
            self.notify(clean(record.output_dir), title="Path copied", markup=False)

    def action_copy_command(self) -> None:
        record = self.selected
        if record is not None and record.output_dir:
            command = f"{COMMAND} {shlex.quote(str(Path(record.output_dir) / OUTPUT_FILES['job']))}"
            self.app.copy_to_clipboard(command)
            self.notify(clean(command), title="Command copied", markup=False)

    def action_delete_result(self) -> None:
        record = self.selected
        if record is None:
            return
        what = (f"{clean(record.output_dir)}\nThe folder and its files are deleted." if record.output_dir
                else f"({record.status}) It has no result; the job is forgotten.")
        message = f"“{shorten(record.prompt, 60)}”\n{what}"

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(record.id)

        self.app.push_screen(ConfirmScreen("Delete this result?", message), answered)

    @work(thread=True, group="delete-result", exit_on_error=False)
    def _delete(self, job_id: str) -> None:
        self.post_message(ResultDeleted(delete_result(self.app.engine, job_id)))

    def on_result_deleted(self, message: ResultDeleted) -> None:
        if message.record is not None:
            self.notify(f"“{shorten(message.record.prompt, 60)}”", title="Result deleted", markup=False)
        self.reload()
