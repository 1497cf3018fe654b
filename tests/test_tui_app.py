"""The Textual app driven like a person would, over the real worker on the tiny model (CPU, private
data dirs): the form queues variants, the queue shows them finish, toasts say so, the history
previews frames and deletes a result, queue actions work, bad input is refused inline."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from engine.api import EngineConfig, JobSpec, StageStarted, Store, build_params, open_worker
from tui.app import CogeditApp
from tui.launch import Launch
from tui.screens.history import HistoryScreen
from tui.screens.new_edit import NewEditScreen
from tui.widgets.frame_preview import FramePreview
from tui.widgets.job_details import JobDetails
from tui.widgets.queue_table import QueueTable

# textual-image 0.12 calls Pillow's Image.getdata, deprecated in Pillow 13 (it still works).
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
TINY = {"height": 64, "width": 96, "max_num_frames": 9, "num_inference_steps": 4}
SIZE = (120, 40)


def make_app(tmp_path, model, start_engine=True, jobs=(), **config) -> CogeditApp:
    def launcher() -> Launch:
        worker = open_worker(EngineConfig(model="tiny", device="cpu", output_dir=tmp_path / "out", **config),
                             root=tmp_path / "data", cache_root=tmp_path / "cache", loader=lambda device: model)
        return Launch(worker, list(jobs))

    app = CogeditApp(launcher, start_engine=start_engine, form_presets={"tiny": build_params(TINY)},
                     form_preset="tiny")
    app.toasts = []
    notify = app.notify

    def record(message, **kwargs):  # keep every toast: they expire while a test waits
        app.toasts.append((kwargs.get("title", ""), message))
        notify(message, **kwargs)

    app.notify = record
    return app


async def until(pilot, predicate, timeout: float = 90.0) -> None:
    from textual.widgets.data_table import RowDoesNotExist

    for _ in range(int(timeout / 0.05)):
        try:
            if predicate():
                return
        except RowDoesNotExist:  # a table caught between clearing and refilling its rows: not yet
            pass
        await pilot.pause(0.05)
    store = pilot.app.store
    jobs = [(r.prompt, r.status, r.error) for r in store.jobs()] if store else None
    raise AssertionError(f"timed out waiting; jobs: {jobs}, engine: {pilot.app.engine_state}")


def statuses(app) -> dict[str, str]:
    return {r.prompt: r.status for r in app.store.jobs()}


async def fill_form(pilot, source: str, prompts: str) -> NewEditScreen:
    await pilot.press("n")
    await until(pilot, lambda: isinstance(pilot.app.screen, NewEditScreen))
    screen = pilot.app.screen
    screen.query_one("#source", Input).value = source
    screen.query_one("#prompts", TextArea).text = prompts
    await pilot.pause()
    return screen


def rendered_text(widget) -> str:
    """The text a widget's details body shows (rendered by rich, as the terminal gets it)."""
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.query_one(".details-body").content)
    return console.export_text()


@pytest.mark.slow
def test_two_variants_from_the_form_finish_and_the_history_previews_them(tmp_path, tiny_model, clip_path):
    app = make_app(tmp_path, tiny_model)

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.engine_state == "idle")
            events = []
            app.engine.subscribe(events.append)
            screen = await fill_form(pilot, str(clip_path), "a cat\n\na dog\n")
            await until(pilot, lambda: "keep" in str(screen.query_one("#source-summary").render()))
            assert "9" in str(screen.query_one("#source-summary").render())  # frames the settings keep
            assert str(screen.query_one("#submit").label) == "Queue 2 edits"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, NewEditScreen))
            await until(pilot, lambda: app.store and statuses(app) == {"a cat": "done", "a dog": "done"})
            await pilot.pause(0.2)
            table = app.screen.query_one(QueueTable)
            assert [str(table.get_row_at(i)[2]) for i in range(table.row_count)] == ["done", "done"]
            finished = [m for title, m in app.toasts if title == "Edit finished"]
            assert len(finished) == 2 and any("a cat" in m for m in finished)
            records = app.store.history()
            assert {r.params.num_inference_steps for r in records} == {4}  # the form's values were used
            inversions = [e.job_ids for e in events if isinstance(e, StageStarted) and e.stage == "invert"]
            assert len(inversions) == 1 and len(inversions[0]) == 2  # the variants shared one inversion

            # An FP8 run (it needs a GPU; here its job.json is made to say so) is marked in the details.
            cat = next(r for r in records if r.prompt == "a cat")
            job_json = Path(cat.output_dir) / "job.json"
            job = json.loads(job_json.read_text())
            job_json.write_text(json.dumps(job | {"model": job["model"] | {"linear_layers": "fp8 (approximate)"}}))

            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
            details = app.screen.query_one(JobDetails)
            shown = {app.screen.selected.prompt: rendered_text(details)}
            await pilot.press("down")
            await until(pilot, lambda: app.screen.selected.prompt not in shown)
            shown[app.screen.selected.prompt] = rendered_text(details)
            assert "fp8 (approximate)" in shown["a cat"] and "fp8" not in shown["a dog"]
            await pilot.press("up")
            preview = app.screen.query_one(FramePreview)
            await until(pilot, lambda: preview.shown_index == 0)
            first = preview.images()
            assert all(image is not None for image in first.values())
            await pilot.press("full_stop")
            await until(pilot, lambda: preview.shown_index == 1)
            assert preview.count == 9
            assert preview.images()["edited"] is not first["edited"]
            await pilot.press("left")
            await until(pilot, lambda: preview.shown_index == 0)

            await pilot.press("slash")
            await pilot.press(*"dog")
            await until(pilot, lambda: app.screen.query_one("#results").row_count == 1)
            await pilot.press("enter", "delete")
            await until(pilot, lambda: app.screen.id == "confirm")
            await pilot.press("y")
            await until(pilot, lambda: [r.prompt for r in app.store.history()] == ["a cat"])
            deleted = next(r for r in records if r.prompt == "a dog")
            assert not Path(deleted.output_dir).exists()
            await pilot.press("escape", "q")  # q quits from the queue screen only
        assert app.return_code == 0

    asyncio.run(scenario())


@pytest.mark.slow
def test_queue_actions_pause_cancel_move_requeue(tmp_path, tiny_model, clip_path):
    params = build_params(TINY)
    app = make_app(tmp_path, tiny_model)

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.engine_state == "idle")
            await pilot.press("p")
            assert app.queue_paused and app.engine.state == "paused"
            for prompt in ("first", "second"):
                app.engine.submit(JobSpec(str(clip_path), prompt, params))
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 2)
            await pilot.pause(0.5)
            assert statuses(app) == {"first": "queued", "second": "queued"}  # paused: nothing starts

            await pilot.press("down", "K")  # "second" moves above "first"
            await until(pilot, lambda: [r.prompt for r in app.store.queued()] == ["second", "first"])
            assert table.selected_key == app.store.queued()[0].id  # the cursor follows the job

            await pilot.press("x")  # cancel "second"
            await until(pilot, lambda: statuses(app)["second"] == "cancelled")
            assert any(title == "Cancelled" for title, _ in app.toasts)
            await pilot.press("r")  # and put it back
            await until(pilot, lambda: statuses(app)["second"] == "queued")

            await pilot.press("p")  # resume: both run
            assert not app.queue_paused
            await until(pilot, lambda: statuses(app) == {"first": "done", "second": "done"})

    asyncio.run(scenario())


def test_invalid_input_shows_inline_errors_and_queues_nothing(tmp_path, tiny_model, clip_path):
    app = make_app(tmp_path, tiny_model, start_engine=False)
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.engine is not None)
            screen = await fill_form(pilot, str(clip_path), "")
            screen.query_one("#param-height", Input).value = "65"
            screen.query_one("#param-guidance_scale", Input).value = "lots"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            assert isinstance(app.screen, NewEditScreen)
            height = screen.query_one("#field-height")
            assert height.has_class("-invalid")
            assert "multiple of 16" in str(height.query_one(".param-error").render())
            assert "not a number" in str(screen.query_one("#field-guidance_scale .param-error").render())
            assert "at least one prompt" in str(screen.query_one("#prompts-error").render())
            assert any("Nothing queued" in message for _, message in app.toasts)

            screen.query_one("#param-height", Input).value = "64"
            screen.query_one("#param-guidance_scale", Input).value = "6"
            screen.query_one("#prompts", TextArea).text = "a cat"
            screen.query_one("#source", Input).value = str(not_a_video)
            await pilot.pause()
            assert not screen.query_one("#field-height").has_class("-invalid")
            await pilot.press("ctrl+s")
            summary = screen.query_one("#source-summary")
            await until(pilot, lambda: summary.has_class("-error") and "notes.mp4" in str(summary.render()))
            assert isinstance(app.screen, NewEditScreen)
            assert app.store.jobs() == []

    asyncio.run(scenario())


def test_presets_fill_the_form_and_a_job_duplicates_into_it(tmp_path, tiny_model, clip_path):
    prompt = "a cat [in a hat]"  # brackets are text, not markup
    app = make_app(tmp_path, tiny_model, start_engine=False,
                   jobs=[JobSpec(str(clip_path), prompt, build_params({**TINY, "seed": 7}))])
    app.form_presets.update({"default": build_params(), "reference": build_params(preset="reference")})

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: app.engine is not None and table.row_count == 1)
            assert str(table.get_row_at(0)[1]) == prompt
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            screen = app.screen
            assert screen.query_one("#param-seed", Input).value == "7"
            assert screen.query_one("#prompts", TextArea).text == prompt
            assert screen.query_one("#source", Input).value == str(clip_path.resolve())
            screen.query_one("#preset").value = "reference"
            await pilot.pause()
            assert screen.query_one("#param-max_num_frames", Input).value == "81"
            assert screen.query_one("#param-resize").value == "stretch"
            assert screen.query_one("#param-literal_guidance").value is True
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, NewEditScreen))

    asyncio.run(scenario())


def test_every_screen_action_is_in_the_command_palette(tmp_path, tiny_model, clip_path):
    app = make_app(tmp_path, tiny_model, start_engine=False,
                   jobs=[JobSpec(str(clip_path), "a cat", build_params(TINY))])

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.engine is not None and app.screen.query_one(QueueTable).row_count == 1)
            titles = {command.title for command in app.get_system_commands(app.screen)}
            for title in ("New edit: a clip, prompts and parameters", "Browse finished results",
                          "Duplicate the selected job into the form, to tweak it",
                          "Pause the queue (the running job finishes)",
                          "Move the selected job up the queue", "Move the selected job down the queue",
                          "Show or hide the job details pane", "Quit", "Keys"):
                assert title in titles, title
            assert not any(title.startswith("Re-queue") for title in titles)  # not for a queued job
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            titles = {command.title for command in app.get_system_commands(app.screen)}
            assert {"Queue one edit per prompt line", "Pick the source video in a file dialog"} <= titles
            await pilot.press("escape", "h")
            await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
            titles = {command.title for command in app.get_system_commands(app.screen)}
            assert {"Search prompts and sources, or filter: status:failed source:NAME after:DATE",
                    "Back to the queue", "Preview on the whole screen, or back"} <= titles

    asyncio.run(scenario())


def test_quitting_mid_job_interrupts_it_and_frees_the_data_dir(tmp_path, tiny_model, clip_path):
    slow = build_params({**TINY, "num_inference_steps": 400})
    app = make_app(tmp_path, tiny_model, jobs=[JobSpec(str(clip_path), "a slow cat", slow)])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: (p := app.tracker.get(app.store.jobs()[0].id) if app.store and app.store.jobs()
                                        else None) is not None and p.stage == "invert" and p.step > 0)
            await pilot.press("q")  # a job runs: it asks first
            await until(pilot, lambda: app.screen.id == "confirm")
            await pilot.press("y")
            await until(pilot, lambda: app.engine_state in ("stopping", "stopped"))
            await until(pilot, lambda: app.return_code is not None)
        assert app.return_code == 0

    asyncio.run(scenario())
    store = Store(tmp_path / "data" / "cogedit.db")
    try:
        assert [r.status for r in store.jobs()] == ["interrupted"]
    finally:
        store.close()
    open_worker(EngineConfig(model="tiny", device="cpu"), root=tmp_path / "data",
                cache_root=tmp_path / "cache").close()  # the lock was released


def test_a_busy_data_dir_exits_with_status_2_and_one_line(tmp_path, tiny_model):
    holder = open_worker(EngineConfig(model="tiny", device="cpu"), root=tmp_path / "data",
                         cache_root=tmp_path / "cache")
    app = make_app(tmp_path, tiny_model)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.return_code is not None)

    try:
        asyncio.run(scenario())
    finally:
        holder.close()
    assert app.return_code == 2
    assert "another cogedit-tui" in app.exit_error and "\n" not in app.exit_error


def test_the_demo_opens_with_its_two_variants_queued(tmp_path, monkeypatch, tiny_model_path):
    from engine.demo import DEMO_PROMPTS
    from tui.launch import demo_launcher

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app = CogeditApp(demo_launcher(model=str(tiny_model_path)), start_engine=False, demo=True)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.store is not None and len(app.store.queued()) == 2)
            notice = str(app.screen.query_one("#demo-notice").render())
            assert "toy model" in notice and "not CogVideoX-5B" in notice
            assert [r.prompt for r in app.store.queued()] == list(DEMO_PROMPTS)
            assert app.engine.config.device == "cpu"

    asyncio.run(scenario())


@pytest.mark.parametrize("argv, demo", [([], False), (["demo"], True),
                                        (["--model", "/models/x", "--device", "cuda:1", "--dtype", "fp16"], False)])
def test_the_command_opens_the_app(monkeypatch, argv, demo):
    import tui.app
    from tui.cli import main

    calls = []
    monkeypatch.setattr(tui.app, "run_app", lambda config, demo=False: calls.append((config, demo)) or 0)
    assert main(argv) == 0
    (config, got_demo), = calls
    assert got_demo is demo
    if "--model" in argv:
        assert (config.model, config.device, config.dtype) == ("/models/x", "cuda:1", "fp16")


def test_a_launcher_that_fails_at_once_exits_with_status_1_and_one_line():
    def launcher() -> Launch:
        raise RuntimeError("no engine here\nsecond line")

    app = CogeditApp(launcher, start_engine=False)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.3)

    asyncio.run(scenario())
    assert app.return_code == 1
    assert app.exit_error == "unexpected RuntimeError: no engine here"


def test_a_failing_job_toasts_its_reason_and_the_log_keeps_the_detail(tmp_path, tiny_model, make_clip):
    too_short = make_clip(3)
    app = make_app(tmp_path, tiny_model, jobs=[JobSpec(str(too_short), "a cat", build_params(TINY))])

    async def scenario():
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.store is not None and app.store.jobs()
                        and app.store.jobs()[0].status == "failed")
            # The store says failed before the event reaches the app: wait for the toast.
            await until(pilot, lambda: any(title == "Edit failed" for title, _ in app.toasts))
            await pilot.pause(0.3)
            reason = app.store.jobs()[0].error
            assert "usable frame" in reason
            failed = [message for title, message in app.toasts if title == "Edit failed"]
            assert len(failed) == 1 and reason in failed[0]
            log = "\n".join(line.text for line in app.screen.query_one("#log").lines)
            assert "failed" in log and "usable frame" in log
            table = app.screen.query_one(QueueTable)
            assert str(table.get_row_at(0)[2]) == "failed"

    asyncio.run(scenario())
