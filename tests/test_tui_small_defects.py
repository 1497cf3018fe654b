"""Issue #15's smaller items, driven with Pilot: the event log after it was hidden, the history's empty
message, deleting a job without a result asks, the interrupted note after a quit, the narrow footer,
the screenshot on a server, frame rates and plurals."""

from __future__ import annotations

import asyncio

import pytest
from test_tui_app import SIZE, TINY, make_app, until

from engine.api import JobSpec, Store, build_params
from tui.screens.history import HistoryScreen
from tui.widgets.adaptive_footer import AdaptiveFooter
from tui.widgets.event_log import EventLog
from tui.widgets.path_input import VIDEO_EXTENSIONS
from tui.widgets.queue_table import QueueTable

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")


def test_lines_logged_while_the_event_log_is_hidden_are_wrapped_to_its_width_when_it_returns(tmp_path, tiny_model):
    app = make_app(tmp_path, tiny_model, start_engine=False)
    note = "a line of sixty characters or so, logged while the pane hid"

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.store is not None)
            log = app.screen.query_one(EventLog)
            await pilot.press("d")  # at 80 columns the details replace the log
            await until(pilot, lambda: not log.size.width)
            before = len(log.lines)
            log.note(note)
            await pilot.press("d")
            await until(pilot, lambda: log.size.width > 60)
            await pilot.pause(0.2)
            assert len(log.lines) - before <= 1 or any(line.text.strip() == note for line in log.lines)

    asyncio.run(scenario())


def test_the_history_says_when_it_is_empty_above_the_footer(tmp_path, tiny_model):
    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.store is not None)
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
            await pilot.pause(0.2)
            empty = app.screen.query_one("#history-empty")
            footer = app.screen.query_one(AdaptiveFooter)
            assert empty.display and empty.region.height and empty.region.bottom <= footer.region.y
            await pilot.press("slash", *"zebra")
            await until(pilot, lambda: "zebra" in str(empty.render()))

    asyncio.run(scenario())


def test_deleting_a_job_without_a_result_asks_first(tmp_path, tiny_model, clip_path):
    app = make_app(tmp_path, tiny_model, start_engine=False,
                   jobs=[JobSpec(str(clip_path), "a cat", build_params(TINY))])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.store is not None and app.store.jobs())
            job = app.store.jobs()[0].id
            app.store.mark_failed(job, "it broke", None)
            app.main_screen.reload()
            await pilot.pause()
            await pilot.press("delete")
            await until(pilot, lambda: app.screen.id == "confirm")
            await pilot.press("n")
            await until(pilot, lambda: app.screen.id == "main")
            assert app.store.get(job) is not None  # kept
            await pilot.press("delete")
            await until(pilot, lambda: app.screen.id == "confirm")
            await pilot.press("y")
            await until(pilot, lambda: app.store.get(job) is None)
            assert any(title == "Job deleted" for title, _ in app.toasts)
            await until(pilot, lambda: app.screen.query_one(QueueTable).row_count == 0)

    asyncio.run(scenario())


def test_a_job_interrupted_by_a_quit_is_noted_at_the_next_start(tmp_path, tiny_model, clip_path):
    (tmp_path / "data").mkdir()
    store = Store(tmp_path / "data" / "cogedit.db")
    record = store.add(str(clip_path), "a cat", build_params(TINY))
    store.mark_interrupted(record.id, "the app was closed")
    store.close()
    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.store is not None)
            log = app.screen.query_one(EventLog)
            await until(pilot, lambda: any("1 job was interrupted" in line.text for line in log.lines))

    asyncio.run(scenario())


def test_the_footer_drops_the_palette_key_below_100_columns(tmp_path, tiny_model):
    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.store is not None)
            await pilot.pause(0.2)
            assert not app.screen.query_one(AdaptiveFooter).show_command_palette
            await pilot.resize_terminal(100, 30)
            await pilot.pause(0.2)
            assert app.screen.query_one(AdaptiveFooter).show_command_palette

    asyncio.run(scenario())


def test_a_screenshot_without_a_downloads_folder_goes_to_the_working_directory(tmp_path, tiny_model, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.store is not None)
            app.deliver_screenshot("shot.svg")
            await until(pilot, lambda: (work / "shot.svg").exists())

    asyncio.run(scenario())


def test_frame_rates_plurals_and_the_picker_offer_what_the_engine_takes():
    from tui.formatting import format_fps, plural

    assert format_fps(30 / 7) == "4.29" and format_fps(8.0) == "8" and format_fps(29.97) == "29.97"
    assert plural(1, "job") == "1 job" and plural(2, "job") == "2 jobs"
    assert ".gif" not in VIDEO_EXTENSIONS  # decord cannot read it: the picker does not offer it


def test_the_demo_does_not_queue_its_prompts_again_once_they_ran(tmp_path, monkeypatch, tiny_model_path):
    from engine.demo import DEMO_PROMPTS
    from tui.launch import demo_launcher

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    launch = demo_launcher(model=str(tiny_model_path))
    first = launch()
    try:
        assert [job.prompt for job in first.initial_jobs] == list(DEMO_PROMPTS)
        records = first.worker.submit_many(first.initial_jobs)
        first.worker.store.mark_done(records[0].id, str(tmp_path / "out"), {}, {})  # one ran, one is queued
    finally:
        first.worker.close()
    second = launch()
    try:
        assert second.initial_jobs == []
    finally:
        second.worker.close()
