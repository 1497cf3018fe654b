"""The new-edit form: a source clip (with what the settings keep of it), one prompt per line (with each
line's token count), a preset, and every parameter generated from the engine's specs. Submit queues one
job per prompt line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Input, Label, Select, TextArea
from textual.worker import get_current_worker

from engine.api import (
    PARAM_SPECS,
    EditError,
    EditParams,
    JobRecord,
    JobSpec,
    ParamsError,
    SourceSummary,
    build_params,
    describe_source,
)

from ..formatting import format_fps, source_name
from ..widgets.adaptive_footer import AdaptiveFooter
from ..widgets.engine_header import EngineHeader
from ..widgets.params_form import ParamsForm
from ..widgets.path_input import VIDEO_EXTENSIONS, PathInput
from ..widgets.prompt_tokens import PromptTokens

if TYPE_CHECKING:
    from ..app import CogeditApp

FRAME_PARAMS = {s.name for s in PARAM_SPECS if s.group == "frames"}
DESCRIBE_DELAY = 0.35
NO_SOURCE = "Type a path (→ completes the name) or press ctrl+o to browse."


class SourceDescribed(Message):
    def __init__(self, path: str, summary: SourceSummary | None, error: str | None) -> None:
        super().__init__()
        self.path, self.summary, self.error = path, summary, error


class Submitted(Message):
    def __init__(self, records: list[JobRecord] | None, error: str | None) -> None:
        super().__init__()
        self.records, self.error = records, error


class NewEditScreen(Screen):
    CSS_PATH = "new_edit.tcss"
    AUTO_FOCUS = ""  # on_mount focuses the first field to fill (the scroll container would take it)
    BINDINGS = [
        Binding("ctrl+s", "submit", "Queue", tooltip="Queue one edit per prompt line", priority=True),
        Binding("ctrl+o", "browse", "Browse", tooltip="Pick the source video in a file dialog"),
        Binding("escape", "close", "Close", tooltip="Close the form without queuing anything"),
        # Priority: focus moves as the key arrives, so the keys typed right after land in the next field.
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    def __init__(self, *, source: str, prompts: list[str], values: dict[str, Any], preset: str | None) -> None:
        super().__init__(id="new-edit")
        self.initial_source, self.initial_prompts = source, prompts
        self.initial_values, self.initial_preset = values, preset
        self._describe_timer: Timer | None = None
        self._submitting = False

    @classmethod
    def fresh(cls, app: CogeditApp) -> NewEditScreen:
        """An empty form on the app's default preset (the demo: its clip and small sizes)."""
        params = app.form_presets[app.form_preset]
        return cls(source=app.form_source, prompts=[], values=_as_values(params), preset=app.form_preset)

    @classmethod
    def from_record(cls, app: CogeditApp, record: JobRecord) -> NewEditScreen:
        """A job's source, prompt and parameters, to tweak one and queue again."""
        return cls(source=record.source, prompts=[record.prompt], values=_as_values(record.params), preset=None)

    @classmethod
    def for_app(cls, app: CogeditApp, record: JobRecord | None = None) -> NewEditScreen:
        """The app's one form, built once and kept (installed): it opens at once after the first time and
        remembers the last entry; ``record`` fills it with a job's source, prompt and parameters."""
        form = app.get_screen("new-edit") if app.is_screen_installed("new-edit") else None
        if form is None:
            form = cls.from_record(app, record) if record is not None else cls.fresh(app)
            app.install_screen(form, name="new-edit")
        elif record is not None:
            form.load(record)
        return form

    def load(self, record: JobRecord) -> None:
        self.query_one("#source", Input).value = record.source
        self.query_one("#prompts", TextArea).text = record.prompt
        self.query_one("#preset", Select).value = Select.NULL
        self.query_one(ParamsForm).fill(_as_values(record.params))

    def compose(self) -> ComposeResult:
        presets = list(self.app.form_presets)
        yield EngineHeader()
        with VerticalScroll(id="form"):
            yield Label("Source video", classes="form-label")
            with Horizontal(id="source-row"):
                yield PathInput(self.initial_source, placeholder="path to a clip", id="source")
                yield Button("Browse…", id="browse", compact=True)
            yield Label(NO_SOURCE, id="source-summary", markup=False)
            yield Label("Prompts: one per line, each line a variant (variants share one inversion)",
                        classes="form-label")
            yield TextArea("\n".join(self.initial_prompts), id="prompts", soft_wrap=True, tab_behavior="focus",
                           show_line_numbers=True)
            yield Label("", id="prompts-error", classes="form-error", markup=False)
            yield PromptTokens(id="prompt-tokens")
            with Horizontal(id="preset-row"):
                yield Label("Preset", classes="form-label")
                yield Select([(name, name) for name in presets], value=self.initial_preset or Select.NULL,
                             prompt="custom (from a job)", compact=True, id="preset")
            yield ParamsForm(self.initial_values, id="params")
            with Horizontal(id="form-buttons"):
                yield Button("Queue 1 edit", variant="primary", id="submit", compact=True)
                yield Button("Close", id="close", compact=True)
        yield AdaptiveFooter()

    def on_mount(self) -> None:
        self.query_one("#form").border_title = "New edit"
        self.query_one(PromptTokens).count_soon(self.prompts())
        self._update_submit_label()
        if self.initial_source:
            self._describe_soon()
        self.set_focus(self.first_focus())

    def first_focus(self) -> Input | TextArea:
        """The prompts when the source is given, else the source."""
        source = self.query_one("#source", Input)
        return self.query_one("#prompts", TextArea) if source.value.strip() else source

    # -- the source and what the settings keep of it ----------------------------------------------

    @on(Input.Changed, "#source")
    def _source_changed(self) -> None:
        self._describe_soon()

    def on_params_form_changed(self, event: ParamsForm.Changed) -> None:
        if event.name in FRAME_PARAMS:
            self._describe_soon()

    def _describe_soon(self) -> None:
        if self._describe_timer is not None:
            self._describe_timer.stop()
        self._describe_timer = self.set_timer(DESCRIBE_DELAY, self._describe_now)

    def _describe_now(self) -> None:
        path = self.source_path
        summary = self.query_one("#source-summary", Label)
        summary.set_class(False, "-error")
        if not path:
            summary.update(NO_SOURCE)
            return
        try:
            params = build_params(self.query_one(ParamsForm).values())
        except ParamsError:
            summary.update("Fix the marked parameters to see how many frames they keep.")
            return
        summary.update(f"reading {source_name(path)} …")
        self._describe(path, params)

    def _model(self) -> str | None:
        """The engine's model, once the engine is open (its family's rules then shape the summary)."""
        engine = getattr(self.app, "engine", None)
        return engine.config.model if engine is not None else None

    @work(thread=True, exclusive=True, group="describe-source", exit_on_error=False)
    def _describe(self, path: str, params: EditParams) -> None:
        worker = get_current_worker()
        try:
            result, error = describe_source(path, params, model=self._model()), None
        except EditError as exc:
            result, error = None, str(exc)
        except Exception as exc:  # decord's own errors: say what it could not do
            result, error = None, f"cannot read {source_name(path)}: {str(exc).splitlines()[0] if str(exc) else exc}"
        if not worker.is_cancelled:
            self.post_message(SourceDescribed(path, result, error))

    def on_source_described(self, message: SourceDescribed) -> None:
        if message.path != self.source_path:
            return  # the path changed since
        summary = self.query_one("#source-summary", Label)
        summary.set_class(message.error is not None, "-error")
        if message.error:
            summary.update(message.error)
            return
        s = message.summary
        summary.update(Text.assemble(
            f"{s.num_frames} frames · {s.width}×{s.height} · {format_fps(s.fps)} fps → the settings keep ",
            (str(s.kept_frames), "bold"),
            f" frames (every {_ordinal(s.stride)}), output at {format_fps(s.output_fps)} fps"))

    @property
    def source_path(self) -> str:
        value = self.query_one("#source", Input).value.strip()
        return os.path.expanduser(value) if value else ""

    # -- prompts, presets, buttons ---------------------------------------------------------------

    def prompts(self) -> list[str]:
        return [line.strip() for line in self.query_one("#prompts", TextArea).text.splitlines() if line.strip()]

    def on_text_area_changed(self, _event: TextArea.Changed) -> None:
        self._update_submit_label()
        prompts = self.prompts()
        self.query_one(PromptTokens).count_soon(prompts)
        if prompts:
            self._prompts_error("")

    def _update_submit_label(self) -> None:
        count = len(self.prompts())
        self.query_one("#submit", Button).label = f"Queue {max(count, 1)} edit{'s' if count > 1 else ''}"

    @on(Select.Changed, "#preset")
    def _preset_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self.query_one(ParamsForm).fill(_as_values(self.app.form_presets[event.value]))

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#close")
    def _close_pressed(self) -> None:
        self.action_close()

    @on(Button.Pressed, "#browse")
    def _browse_pressed(self) -> None:
        self.action_browse()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_browse(self) -> None:
        from textual_fspicker import FileOpen, Filters

        current = Path(self.source_path) if self.source_path else Path.cwd()
        folder = current if current.is_dir() else current.parent if current.parent.is_dir() else Path.cwd()
        filters = Filters(("Videos", lambda p: p.suffix.lower() in VIDEO_EXTENSIONS), ("All files", lambda p: True))
        self.app.push_screen(FileOpen(folder, "Source video", filters=filters), self._picked)

    def _picked(self, path: Path | None) -> None:
        if path is not None:
            self.query_one("#source", Input).value = str(path)

    # -- submitting ------------------------------------------------------------------------------

    def action_submit(self) -> None:
        if self._submitting:
            return
        problems = self.query_one(ParamsForm).problems()
        prompts, path = self.prompts(), self.source_path
        self._prompts_error("" if prompts else "Write at least one prompt: one line per variant.")
        if not path:
            self._source_error("Choose a source video.")
        if problems or not prompts or not path:
            self.notify("Nothing queued: fix the marked fields.", severity="warning")
            self._focus_first_problem(problems, prompts, path)
            return
        try:
            params = build_params(self.query_one(ParamsForm).values())
        except ParamsError as exc:  # the fields were each valid; a rule across fields is not
            self.notify("; ".join(exc.problems), title="Nothing queued", severity="error", markup=False)
            return
        self._set_submitting(True)
        self._submit(path, prompts, params)

    def _focus_first_problem(self, problems: dict[str, str], prompts: list[str], path: str) -> None:
        if not path:
            self.query_one("#source", Input).focus()
        elif not prompts:
            self.query_one("#prompts", TextArea).focus()
        elif problems:
            editor = self.query_one(f"#param-{next(iter(problems))}")
            editor.focus()
            editor.scroll_visible()

    def _prompts_error(self, text: str) -> None:
        label = self.query_one("#prompts-error", Label)
        label.update(text)
        label.set_class(bool(text), "-shown")

    def _source_error(self, text: str) -> None:
        summary = self.query_one("#source-summary", Label)
        summary.update(text)
        summary.set_class(True, "-error")

    def _set_submitting(self, busy: bool) -> None:
        self._submitting = busy
        button = self.query_one("#submit", Button)
        button.disabled = busy
        if busy:
            button.label = "Queuing …"
        else:
            self._update_submit_label()

    @work(thread=True, exclusive=True, group="submit", exit_on_error=False)
    def _submit(self, path: str, prompts: list[str], params: EditParams) -> None:
        try:
            # A file that is no usable clip, or settings the model's family cannot run, fail here, inline.
            describe_source(path, params, model=self._model())
            engine = self.app.wait_for_engine()
            # Queued together, so they run as one batch of variants over one inversion.
            records = engine.submit_many([JobSpec(path, prompt, params) for prompt in prompts])
        except (EditError, RuntimeError) as exc:
            self.post_message(Submitted(None, str(exc)))
        except Exception as exc:  # a fault: say it in one line, queue nothing more
            self.post_message(Submitted(None, f"unexpected {type(exc).__name__}: {exc}"))
        else:
            self.post_message(Submitted(records, None))

    def on_submitted(self, message: Submitted) -> None:
        self._set_submitting(False)
        if message.error:
            self._source_error(message.error)
            self.notify(message.error, title="Nothing queued", severity="error", markup=False)
            return
        count = len(message.records)
        self.notify(f"{count} edit{'s' if count > 1 else ''} of {source_name(self.source_path)} queued.",
                    title="Queued", markup=False)
        self.query_one("#prompts", TextArea).text = ""  # the source and parameters stay for the next edit
        self.dismiss(message.records)


def _as_values(params: EditParams) -> dict[str, Any]:
    return {spec.name: getattr(params, spec.name) for spec in PARAM_SPECS}


def _ordinal(n: int) -> str:
    if n == 1:
        return "frame"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
