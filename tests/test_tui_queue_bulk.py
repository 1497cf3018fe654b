"""The queue on several rows at once, driven with Pilot (issue #15): space marks rows, x and del act on
the marked ones, X clears the finished ones, u brings back the dismissed ones; a failed job's reason is
readable whole at 80x24 and 120x40."""

from __future__ import annotations

import asyncio

import pytest
from test_tui_app import SIZE, TINY, make_app, until
from test_tui_usability import screen_text
from textual.widgets._footer import FooterKey

from engine.api import JobSpec, build_params
from tui.widgets.queue_table import QueueTable

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
LONG_REASON = ("out of GPU memory on cuda:0 — use fewer frames (max_num_frames), keep vae_tiling on, or queue "
               "fewer variants of a source together")


def queued_app(tmp_path, tiny_model, clip_path, prompts):
    params = build_params(TINY)
    return make_app(tmp_path, tiny_model, start_engine=False,
                    jobs=[JobSpec(str(clip_path), prompt, params) for prompt in prompts])


def by_prompt(app) -> dict[str, str]:
    return {r.prompt: r.status for r in app.store.jobs()}


def test_marked_jobs_are_cancelled_together_and_the_others_stay_queued(tmp_path, tiny_model, clip_path):
    app = queued_app(tmp_path, tiny_model, clip_path, ["one", "two", "three"])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 3)
            await pilot.press("space")  # marks "one", the cursor moves to "two"
            await pilot.press("down", "space")  # marks "three"
            assert "●" in str(table.get_row_at(0)[0]) and "●" not in str(table.get_row_at(1)[0])
            await pilot.press("x")
            await until(pilot, lambda: by_prompt(app) == {"one": "cancelled", "two": "queued", "three": "cancelled"})
            assert ("Cancelled", "2 jobs cancelled; r re-queues one, del removes the rows.") in app.toasts
            await until(pilot, lambda: "●" not in "".join(str(table.get_row_at(i)[0]) for i in range(3)))

    asyncio.run(scenario())


def test_clearing_finished_rows_hides_results_asks_before_forgetting_and_undo_brings_them_back(
        tmp_path, tiny_model, clip_path):
    app = queued_app(tmp_path, tiny_model, clip_path, ["done one", "done two", "broken", "waiting"])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 4)
            ids = {r.prompt: r.id for r in app.store.jobs()}
            for prompt in ("done one", "done two"):
                app.store.mark_done(ids[prompt], str(tmp_path / prompt), {"edit": 1.0}, {})
            app.store.mark_failed(ids["broken"], "it broke", None)
            app.main_screen.reload()
            await pilot.pause()
            await pilot.press("X")
            await until(pilot, lambda: app.screen.id == "confirm")  # the failed job would be forgotten
            await pilot.press("n")
            await until(pilot, lambda: app.screen.id == "main")
            assert app.store.get(ids["broken"]) is not None
            assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["broken", "waiting"]
            await pilot.press("X")
            await until(pilot, lambda: app.screen.id == "confirm")
            await pilot.press("y")
            await until(pilot, lambda: app.store.get(ids["broken"]) is None)
            await until(pilot, lambda: table.row_count == 1)  # only the queued job is left
            await pilot.press("u")
            await until(pilot, lambda: table.row_count == 3)
            assert {str(table.get_row_at(i)[1]) for i in range(3)} == {"done one", "done two", "waiting"}
            assert any(title == "Undone" for title, _ in app.toasts)

    asyncio.run(scenario())


def test_del_on_marked_done_rows_dismisses_them_at_once_and_u_undoes_it(tmp_path, tiny_model, clip_path):
    app = queued_app(tmp_path, tiny_model, clip_path, ["a", "b", "c"])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 3)
            for record in app.store.jobs()[:2]:
                app.store.mark_done(record.id, str(tmp_path / record.prompt), {"edit": 1.0}, {})
            app.main_screen.reload()
            await pilot.press("space", "space", "delete")
            await until(pilot, lambda: table.row_count == 1)
            assert app.screen.id == "main"  # a result stays in the history: nothing to confirm
            await pilot.press("u")
            await until(pilot, lambda: table.row_count == 3)

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_a_failed_jobs_reason_is_readable_whole_under_the_queue(tmp_path, tiny_model, clip_path, size):
    app = queued_app(tmp_path, tiny_model, clip_path, ["a cat"])

    async def scenario():
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.store is not None and app.store.jobs())
            app.store.mark_failed(app.store.jobs()[0].id, LONG_REASON, None)
            app.main_screen.reload()
            await pilot.pause(0.2)
            text = " ".join(screen_text(app).split())
            assert LONG_REASON in text, text

    asyncio.run(scenario())


def test_the_bulk_actions_are_in_the_footer_and_the_palette(tmp_path, tiny_model, clip_path):
    app = queued_app(tmp_path, tiny_model, clip_path, ["a", "b"])

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 2)
            app.store.mark_done(app.store.jobs()[0].id, str(tmp_path / "a"), {"edit": 1.0}, {})
            app.main_screen.reload()
            await pilot.press("space")
            titles = {command.title for command in app.get_system_commands(app.screen)}
            for action in ("toggle_mark", "unmark", "clear_finished"):
                binding = next(b.binding for b in app.screen.active_bindings.values() if b.binding.action == action)
                assert binding.show and binding.tooltip in titles, action
            await pilot.press("delete")
            await until(pilot, lambda: table.row_count == 1)
            titles = {command.title for command in app.get_system_commands(app.screen)}
            assert "Bring back the jobs last dismissed or cleared from the queue" in titles

    asyncio.run(scenario())


def test_quit_stays_in_the_80_column_footer_with_rows_marked(tmp_path, tiny_model, clip_path):
    app = queued_app(tmp_path, tiny_model, clip_path, ["a", "b"])

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 2)
            app.store.mark_done(app.store.jobs()[1].id, str(tmp_path / "b"), {"edit": 1.0}, {})
            app.main_screen.reload()
            await pilot.press("space")  # Unmark and Clear join the footer
            await pilot.pause(0.2)
            shown = {key.action: key.region for key in app.screen.query(FooterKey)}
            assert {"unmark", "clear_finished"} <= set(shown)
            quit_key = shown["quit_app"]
            assert quit_key.width and quit_key.right <= 80  # whole, on screen

    asyncio.run(scenario())
