"""The history as issue #15 asked for it, driven with Pilot on the snapshot tests' fixed store: the
edit-vs-original PSNR in the list, sorting, filters (status, source, date), the variants of one source
grouped and side by side, the A/B and difference views, the contact sheet, a larger preview, playback,
copying the --from-job command."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import numpy as np
import pytest
import test_tui_snapshots
from PIL import Image
from test_tui_snapshots import HISTORY, settle
from textual.widgets import Input

from engine.api import build_params, result_frames
from engine.demo.sample_clip import write_sample_clip
from tui.cli import build_parser
from tui.history_query import parse_query
from tui.screens.history import HistoryScreen, ResultsTable
from tui.widgets.frame_preview import FramePreview

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
SIZE = (120, 40)
fixture_app = test_tui_snapshots.fixture_app  # the snapshot tests' app on its fixed store


def column(table, name: str) -> list[str]:
    index = [key for key, _, _ in table.COLUMNS].index(name)
    return [str(table.get_row_at(i)[index]).strip() for i in range(table.row_count)]


async def open_history(pilot) -> HistoryScreen:
    await settle(pilot)
    await pilot.press("h")
    await settle(pilot)
    assert isinstance(pilot.app.screen, HistoryScreen)
    return pilot.app.screen


async def search(pilot, text: str) -> None:
    pilot.app.screen.query_one("#search", Input).value = text
    await settle(pilot)


def test_the_list_shows_the_edit_psnr_sorts_and_filters_by_status_source_and_date(fixture_app):
    app = fixture_app

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_history(pilot)
            table = screen.query_one(ResultsTable)
            assert column(table, "edit") == ["17.2", "14.8", "12.1"]  # psnr_edited_vs_original_db
            assert column(table, "psnr") == ["31.4", "31.4", "28.9"]
            await pilot.press("s")  # oldest first
            assert column(table, "prompt") == [h[1] for h in reversed(HISTORY)]
            await pilot.press("s")  # edit PSNR, highest first
            assert column(table, "edit") == ["17.2", "14.8", "12.1"]
            assert "edit PSNR" in str(screen.query_one("#results").border_title)
            await search(pilot, "status:failed")
            assert column(table, "prompt") == ["failed: replace the car with a bicycle"]
            await search(pilot, "status:all source:dog")
            assert column(table, "prompt") == ["a claymation dog on a skateboard"]
            await search(pilot, "after:2026-11-02")  # every result finished on 2026-11-01 (UTC)
            assert table.row_count == 0 and screen.query_one("#history-empty").display
            await search(pilot, "before:2026-11-01 street")
            assert table.row_count == 2
            await search(pilot, "after:yesterday")
            assert "after:yesterday?" in str(screen.query_one("#search-problem").render())

    asyncio.run(scenario())


def add_variant(app, outputs: Path) -> str:
    """A second result of the newest entry's source and parameters (another prompt): its variant."""
    first = app.store.get(HISTORY[0][0])
    record = app.store.add(first.source, "the same street in autumn", build_params({}))
    folder = outputs / f"20261031-201600-{record.id}"
    for name, seed in (("original", 0), ("reconstruction", 0), ("edited", 9)):
        write_sample_clip(folder / f"{name}.mp4", num_frames=9, height=64, width=96, fps=8, seed=seed)
    app.store.mark_done(record.id, str(folder), {"edit": 1.0}, {})
    return record.id


def test_the_views_show_a_b_the_difference_the_variants_and_the_contact_sheet(fixture_app):
    app = fixture_app

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            add_variant(app, Path("outputs"))
            screen = await open_history(pilot)
            await pilot.press("s", "s", "s", "s", "s")  # by source: the variants together
            table = screen.query_one(ResultsTable)
            assert column(table, "prompt")[:2] == ["the same street in autumn", "↳ a watercolor painting of a street"]
            await pilot.press("down")
            preview = screen.query_one(FramePreview)
            for _ in range(100):
                await settle(pilot)
                if preview.output_dir == screen.selected.output_dir and preview.shown_index == 0:
                    break
            assert screen.selected.id == HISTORY[0][0]
            assert list(preview.images()) == ["original", "reconstruction", "edited"]
            frames = result_frames(screen.selected.output_dir, 0)  # what the videos hold, read apart
            original, edited = (frames[k].astype(np.int16) for k in ("original", "edited"))

            await pilot.press("v")  # A/B: the original's left half, the edit's right half
            await settle(pilot)
            assert screen.selected.id == HISTORY[0][0]  # the list's resize kept its cursor
            (split,) = (np.asarray(image, dtype=np.int16) for image in preview.images().values())
            middle = split.shape[1] // 2
            assert np.array_equal(split[:, : middle], original[:, : middle])
            assert np.array_equal(split[:, middle + 1:], edited[:, middle + 1:])

            await pilot.press("v")  # the difference, four times brighter
            await settle(pilot)
            difference = np.asarray(list(preview.images().values())[2], dtype=np.int16)
            assert np.array_equal(difference, np.minimum(255, np.abs(edited - original) * 4))

            await pilot.press("v")  # the variants of this source side by side
            await settle(pilot)
            assert list(preview.images()) == ["original", "this edit", "the same street in autumn"]

            await pilot.press("v")  # the contact sheet
            await settle(pilot)
            assert "contact_sheet.png" in str(preview.query_one("#preview-message").render())  # none written
            sheet = Image.new("RGB", (40, 30), (200, 10, 10))
            sheet.save(Path(screen.selected.output_dir) / "contact_sheet.png")
            await pilot.press("v", "v", "v", "v", "v")  # round again to the sheet
            await settle(pilot)
            assert np.array_equal(np.asarray(preview.images()["contact sheet"]), np.asarray(sheet))

    asyncio.run(scenario())


def test_zoom_makes_the_preview_larger_and_space_plays_it(fixture_app):
    app = fixture_app

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_history(pilot)
            preview = screen.query_one(FramePreview)
            height = preview.region.height
            await pilot.press("z")
            await settle(pilot)
            assert preview.region.height > height
            assert not screen.query_one("#history-top").region.height
            await pilot.press("space")
            seen = set()
            for _ in range(200):
                seen.add(preview.shown_index)
                if {8, 0} <= seen and len(seen) == 9:
                    break
                await pilot.pause(0.05)
            assert seen == set(range(9)) and preview.playing  # every frame, and round again
            await pilot.press("space")
            assert not preview.playing
            await pilot.press("escape")  # out of the zoom first
            assert isinstance(app.screen, HistoryScreen) and screen.query_one("#history-top").region.height

    asyncio.run(scenario())


def test_y_copies_a_from_job_command_the_cli_takes(fixture_app):
    app = fixture_app
    copied = []
    app.copy_to_clipboard = copied.append

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_history(pilot)
            await pilot.press("Y")
            await settle(pilot)
            return screen.selected.output_dir

    output_dir = asyncio.run(scenario())
    words = shlex.split(copied[-1])
    assert words[:2] == ["cogedit-tui", "edit"]
    args = build_parser().parse_args(words[1:])
    assert args.from_job == Path(output_dir) / "job.json"


def test_the_query_reads_its_filters_and_names_a_bad_one():
    query = parse_query("Street status:all source:dog after:2026-11-01 before:nope")
    assert query.words == ["street"] and query.source == "dog" and len(query.statuses) == 4
    assert query.after is not None and query.before is None
    assert query.problems == ["before:nope? use a date like 2026-11-01"]


def test_playback_takes_the_frame_rate_job_json_records(tmp_path):
    from tui.formatting import result_fps

    (tmp_path / "job.json").write_text('{"frames": {"fps": 4.5, "count": 9}}')
    assert result_fps(str(tmp_path)) == 4.5
    (tmp_path / "job.json").write_text("{}")
    assert result_fps(str(tmp_path)) is None and result_fps(str(tmp_path / "gone")) is None


def test_a_search_typed_fast_after_slash_lands_in_the_search_not_on_the_keys(fixture_app):
    from test_tui_usability import type_fast

    app = fixture_app

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_history(pilot)
            type_fast(app, ["slash", *"zebra"])  # z zooms and s sorts when the list has the focus
            await settle(pilot)
            search = screen.query_one("#search", Input)
            assert search.value == "zebra" and not screen.has_class("-zoomed")
            type_fast(app, ["slash"])  # in the search, / is a slash (source:/data/clips)
            await settle(pilot)
            assert search.value == "zebra/"

    asyncio.run(scenario())
