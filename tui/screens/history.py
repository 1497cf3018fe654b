"""The history: every finished edit, newest first, searchable by prompt and source; the selected
result's frames (original / reconstruction / edited), parameters, timings, PSNR and file paths."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label

from engine.api import Event, JobFinished, JobRecord, delete_result

from ..formatting import clean, format_psnr, format_short_timestamp, shorten, source_name
from ..widgets.adaptive_footer import AdaptiveFooter
from ..widgets.engine_header import EngineHeader
from ..widgets.flex_table import FlexTable
from ..widgets.frame_preview import FramePreview
from ..widgets.job_details import JobDetails
from .confirm import ConfirmScreen


class ResultsTable(FlexTable):
    """Finished results; ← and → step the preview's frame while the list has the focus."""

    COLUMNS = (("finished", "finished", 11), ("prompt", "prompt", 0), ("source", "source", 12),
               ("psnr", "PSNR", 7))
    BINDINGS = [Binding("left", "screen.step(-1)", "Previous frame", show=False),
                Binding("right", "screen.step(1)", "Next frame", show=False)]


class ResultDeleted(Message):
    def __init__(self, record: JobRecord | None) -> None:
        super().__init__()
        self.record = record


class HistoryScreen(Screen):
    CSS_PATH = "../styles/history.tcss"
    BINDINGS = [
        Binding("slash", "focus_search", "Search", key_display="/", tooltip="Search prompts and sources"),
        Binding("comma", "step(-1)", "Frame", key_display=",/.", tooltip="Preview the previous frame"),
        Binding("full_stop", "step(1)", "Next frame", show=False, tooltip="Preview the next frame"),
        Binding("c", "duplicate", "Copy", tooltip="Duplicate this result's job into the form, to tweak it"),
        Binding("y", "copy_path", "Path", tooltip="Copy the result folder's path to the clipboard"),
        Binding("delete", "delete_result", "Delete", key_display="del", tooltip="Delete this result (asks first)"),
        Binding("d", "toggle_details", "Details", tooltip="Show or hide the result details pane"),
        Binding("escape", "back", "Back", tooltip="Back to the queue"),
    ]

    def __init__(self) -> None:
        super().__init__(id="history")
        self._records: dict[str, JobRecord] = {}
        self._shown: str | None = None

    def compose(self) -> ComposeResult:
        yield EngineHeader()
        yield Input(placeholder="search prompts and sources ( / )", id="search", compact=True)
        yield Label("No finished edits yet: they appear here when a job is done.", id="history-empty",
                    markup=False)
        with Horizontal(id="history-top"):
            yield ResultsTable(id="results")
            yield JobDetails(id="result-details", placeholder="Select a result.")
        yield FramePreview(self.app.image_class, id="preview")
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.query_one("#results").border_title = "History"
        self.query_one("#preview").border_title = "Preview"
        self.query_one("#result-details").border_title = "Result"
        self.app.engine_events.subscribe(self, self._on_engine_news)
        self.reload()
        self.query_one(ResultsTable).focus()

    def _on_engine_news(self, event: Event) -> None:
        if isinstance(event, JobFinished):
            self.reload()

    def reload(self) -> None:
        store = self.app.store
        search = self.query_one("#search", Input).value.strip()
        records = store.history(search) if store is not None else []
        self._records = {r.id: r for r in records}
        rows = [(r.id, [format_short_timestamp(r.finished), clean(r.prompt), source_name(r.source),
                        Text(format_psnr(r.metrics).replace(" dB", ""), justify="right")]) for r in records]
        self.query_one(ResultsTable).show_rows(rows)
        empty = self.query_one("#history-empty")
        empty.display = not records
        if not records:
            empty.update(f"No finished edit matches “{clean(search)}”." if search
                         else "No finished edits yet: they appear here when a job is done.")
        self._show_selected()
        self.refresh_bindings()

    @property
    def selected(self) -> JobRecord | None:
        key = self.query_one(ResultsTable).selected_key
        return self._records.get(key) if key else None

    def _show_selected(self) -> None:
        record = self.selected
        self.query_one(JobDetails).show(record, files=True)
        record_id = record.id if record else None
        if record_id != self._shown:  # a new selection: preview its first frame
            self._shown = record_id
            self.query_one(FramePreview).show_result(record.output_dir if record else None)

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
        if action in ("step", "duplicate", "copy_path", "delete_result"):
            return self.selected is not None
        return True

    def action_toggle_details(self) -> None:
        self.toggle_class("-details-toggled")

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_step(self, delta: int) -> None:
        self.query_one(FramePreview).step(delta)

    def action_back(self) -> None:
        if self.query_one("#search", Input).has_focus:
            self.query_one(ResultsTable).focus()
        else:
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

    def action_delete_result(self) -> None:
        record = self.selected
        if record is None:
            return
        message = f"“{shorten(record.prompt, 60)}”\n{clean(record.output_dir)}\nThe folder and its files are deleted."

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
