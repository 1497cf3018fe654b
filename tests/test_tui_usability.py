"""Issue #15 as a new user meets it, driven with Pilot: q quits from the main screen only and asks while
a job runs; job text never reaches the terminal as escape sequences; honest progress; cancelling."""

from __future__ import annotations

import asyncio

import pytest
from test_tui_app import SIZE, TINY, make_app, until
from textual.geometry import Region
from textual.widgets import Input, Select

from engine.api import JobSpec, build_params
from tui.screens.history import HistoryScreen
from tui.screens.new_edit import NewEditScreen

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
HOSTILE = "a cat\x1b[2J\x1b]0;pwned\x07 on a \u202eroof"


def screen_text(app) -> str:
    """Every character the current screen sends to the terminal."""
    screen = app.screen
    lines = []
    for widget in screen.query("*"):
        if widget.display and widget.size.area:
            for strip in widget.render_lines(Region(0, 0, widget.size.width, widget.size.height)):
                lines.append("".join(segment.text for segment in strip))
    return "\n".join(lines)


def test_q_quits_from_the_main_screen_only(tmp_path, tiny_model, clip_path):
    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.store is not None)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            app.screen.query_one("#source", Input).value = str(clip_path)
            app.screen.query_one("#preset", Select).focus()
            await pilot.press("q")
            await pilot.pause(0.2)
            assert app.is_running and isinstance(app.screen, NewEditScreen)
            assert app.screen.query_one("#source", Input).value == str(clip_path)  # the form is kept
            await pilot.press("escape")
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
            await pilot.press("q")
            await pilot.pause(0.2)
            assert app.is_running and isinstance(app.screen, HistoryScreen)
            await pilot.press("escape")
            await until(pilot, lambda: app.screen.id == "main")
            await pilot.press("q")  # no job runs: it quits at once
            await until(pilot, lambda: not app.is_running, timeout=20)
        assert app.return_code == 0

    asyncio.run(scenario())


def test_q_is_in_the_footer_at_80_columns(tmp_path, tiny_model):
    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.store is not None)
            shown = {b.binding.action for b in app.screen.active_bindings.values()
                     if b.binding.show and b.enabled and b.node is app.screen}
            assert "quit_app" in shown

    asyncio.run(scenario())


def test_the_header_says_stopping_until_the_engine_has_stopped(tmp_path, tiny_model):
    app = make_app(tmp_path, tiny_model, start_engine=False)
    app._quitting, app._engine_closed = True, True
    assert app._engine_state_now() == "stopping"
    app._engine_shut = True
    assert app._engine_state_now() == "stopped"


def test_job_text_is_shown_without_its_control_characters(tmp_path, tiny_model, clip_path):
    params = build_params(TINY)
    app = make_app(tmp_path, tiny_model, start_engine=False, jobs=[JobSpec(str(clip_path), HOSTILE, params)])

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.store is not None and app.store.jobs())
            record = app.store.jobs()[0]
            finished = app.store.add(str(clip_path), HOSTILE, params)
            app.store.mark_failed(finished.id, "decoder said \x1b[31mred\x1b[0m", None)
            app.main_screen.reload()
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "a cat" in text and "\x1b" not in text and "\x07" not in text and "\u202e" not in text
            assert "\\x1b[2J" in text  # shown, visibly
            app.store.mark_done(record.id, str(tmp_path / "gone"), {"edit": 1.0}, {})
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "a cat" in text and "\x1b" not in text and "\x07" not in text and "\u202e" not in text

    asyncio.run(scenario())


def type_fast(app, keys: list[str]) -> None:
    """Keys as a fast typist sends them: all in the app's queue before the first is handled."""
    from textual import events

    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else {"space": " "}.get(key)))


def test_keys_typed_right_after_n_and_tab_land_in_the_right_field(tmp_path, tiny_model):
    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.store is not None)
            type_fast(app, ["n", *"clip", "tab", "tab", *"a", "space", *"cat", "tab"])
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            await pilot.pause(0.5)
            form = app.screen
            assert form.query_one("#source", Input).value == "clip"
            assert form.query_one("#prompts").text == "a cat"
            assert app.focused is form.query_one("#preset")

    asyncio.run(scenario())


def test_a_running_job_shows_its_stage_time_spent_job_eta_and_cancelling(tmp_path, tiny_model, clip_path):
    import time

    from engine.api import JobStarted, StageFinished, StageStarted
    from tui.messages import EngineEvent
    from tui.widgets.event_log import EventLog
    from tui.widgets.queue_table import QueueTable

    app = make_app(tmp_path, tiny_model, start_engine=False,
                   jobs=[JobSpec(str(clip_path), "a cat", build_params(TINY))])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.store is not None and app.store.jobs())
            # The queuing's own event resets a job's progress: let it arrive before the stages are posted.
            log = app.screen.query_one(EventLog)
            await until(pilot, lambda: any("queued" in entry.plain for entry in log._entries))
            job = app.store.jobs()[0].id
            app.store.mark_running(job)
            now = time.time()
            for event in (JobStarted(job, time=now - 20), StageStarted("frames", (job,), 0, time=now - 20),
                          StageFinished("frames", (job,), 8.0), StageStarted("encode", (job,), 0, time=now - 12)):
                app.post_message(EngineEvent(event))
            table = app.screen.query_one(QueueTable)
            cells = lambda: [str(cell) for cell in table.get_row_at(0)]  # noqa: E731
            await until(pilot, lambda: "encode" in cells()[3])
            await pilot.pause(1.2)  # a tick
            status, progress, eta = cells()[2:]
            assert status == "running 2/7"  # the stage counter
            assert progress.split()[-1] in ("0:12", "0:13", "0:14")  # the time spent in a stage without steps
            assert eta.endswith("+")  # later stages never measured: a lower bound, said so
            assert "1 running" in app.screen.query_one("#queue-pane").border_title
            app.engine.cancel = lambda job_id: True  # the worker's side is the engine's tests'
            await pilot.press("x")
            await until(pilot, lambda: cells()[2] == "cancelling")
            assert any(title == "Cancelling" and "stops in a moment, inside its encode stage" in message
                       for title, message in app.toasts)

    asyncio.run(scenario())


def test_the_form_remembers_the_last_entry_and_the_queued_job_is_selected(tmp_path, tiny_model, clip_path):
    from textual.widgets import TextArea

    from tui.widgets.queue_table import QueueTable

    app = make_app(tmp_path, tiny_model, start_engine=False,
                   jobs=[JobSpec(str(clip_path), "first", build_params(TINY))])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.store is not None and app.store.jobs())
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            form = app.screen
            form.query_one("#source", Input).value = str(clip_path)
            form.query_one("#param-seed", Input).value = "123"
            await pilot.press("escape")
            await until(pilot, lambda: app.screen.id == "main")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            assert app.screen.query_one("#source", Input).value == str(clip_path)  # kept
            assert app.screen.query_one("#param-seed", Input).value == "123"
            assert app.focused is app.screen.query_one("#prompts", TextArea)  # the source is there: the prompts
            await pilot.press(*"second")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: app.screen.id == "main", timeout=30)
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 2)
            assert app.store.get(table.selected_key).prompt == "second"  # the new job is selected

    asyncio.run(scenario())


def test_cancelling_a_queued_job_says_what_happens_to_its_row(tmp_path, tiny_model, clip_path):
    from tui.widgets.queue_table import QueueTable

    app = make_app(tmp_path, tiny_model, start_engine=False,
                   jobs=[JobSpec(str(clip_path), "a cat", build_params(TINY))])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.store is not None and app.store.jobs())
            await pilot.press("x")
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: str(table.get_row_at(0)[2]) == "cancelled")
            message = next(message for title, message in app.toasts if title == "Cancelled")
            assert "will not run" in message and "removed" not in message  # the row stays: r or del

    asyncio.run(scenario())
