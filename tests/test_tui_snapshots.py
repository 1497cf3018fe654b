"""Snapshots of the main, new-edit and history screens at 80x24 and 120x40 (pytest-textual-snapshot).

Deterministic by construction: a real SQLite store filled with fixed records (ids, prompts,
timestamps, metrics), times shown in UTC, the engine opened but never started (the header says
"not started"; no model loads, no event arrives), real result videos written from the seeded
sample-clip generator, half-block images with a fixed cell size, and no blinking cursors.
Update with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from engine.api import EngineConfig, Store, build_params, open_worker
from engine.demo.sample_clip import write_sample_clip
from engine.params import params_to_dict
from tui.app import CogeditApp
from tui.launch import Launch

# textual-image 0.12 calls Pillow's Image.getdata, deprecated in Pillow 13 (it still works).
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
SIZES = [(80, 24), (120, 40)]
DAY = 1793527200.0  # 2026-11-01 10:00 UTC

# (id, status, position, prompt, source, parameter overrides, finished offset in s, extra columns)
QUEUE = [
    ("c0ffee0001", "cancelled", 1, "a pencil sketch of the street", "/data/clips/street.mp4", {}, 3600, {}),
    ("c0ffee0002", "failed", 2, "replace the car with a bicycle", "/data/clips/street.mp4",
     {"max_num_frames": 81}, 7200,
     {"error": "out of GPU memory on cuda:0 — use fewer frames (max_num_frames), keep vae_tiling on, or "
               "queue fewer variants of a source together", "log_path": "/data/logs/c0ffee0002.log"}),
    ("c0ffee0003", "running", 3, "the same street in heavy snow", "/data/clips/street.mp4", {}, None, {}),
    ("c0ffee0004", "queued", 4, "a watercolor painting of a street", "/data/clips/street.mp4", {}, None, {}),
    ("c0ffee0005", "queued", 5, "the same street at night, neon signs", "/data/clips/street.mp4",
     {"guidance_scale": 7.5, "seed": 7}, None, {}),
    ("c0ffee0006", "queued", 6, "a claymation dog on a skateboard", "/data/clips/dog-skate.mov",
     {"resize": "stretch", "inject_fraction": 0.8}, None, {}),
]
HISTORY = [
    ("d0d0d00001", "a watercolor painting of a street", "/data/clips/street.mp4", {}, 1000,
     {"psnr_round_trip_vs_original_db": 31.42, "psnr_round_trip_vs_vae_db": 33.1,
      "psnr_vae_vs_original_db": 35.87, "psnr_edited_vs_original_db": 17.25}),
    ("d0d0d00002", "the same street at night, neon signs", "/data/clips/street.mp4", {"guidance_scale": 7.5}, 900,
     {"psnr_round_trip_vs_original_db": 31.42, "psnr_edited_vs_original_db": 14.8}),
    ("d0d0d00003", "a claymation dog on a skateboard", "/data/clips/dog-skate.mov", {"seed": 3}, 500,
     {"psnr_round_trip_vs_original_db": 28.9, "psnr_edited_vs_original_db": 12.1}),
]
TIMINGS = {"frames": 1.2, "encode": 6.4, "invert": 148.3, "round_trip": 146.9, "edit": 301.5, "decode": 21.7,
           "export": 2.1}


def fill_store(data_dir: Path, outputs: Path) -> None:
    """The fixed records, written straight into the store's table."""
    Store(data_dir / "cogedit.db").close()  # creates the schema
    db = sqlite3.connect(data_dir / "cogedit.db")
    rows = []
    for job_id, status, position, prompt, source, overrides, finished, extra in QUEUE:
        rows.append(dict(id=job_id, source=source, prompt=prompt, params=overrides, status=status,
                         position=position, created=DAY + position, finished=finished and DAY + finished, **extra))
    for n, (job_id, prompt, source, overrides, finished, metrics) in enumerate(HISTORY):
        rows.append(dict(id=job_id, source=source, prompt=prompt, params=overrides, status="done", position=-10 + n,
                         created=DAY - 5000 + n, finished=DAY - 5000 + finished, metrics=metrics, timings=TIMINGS,
                         output_dir=str(outputs / f"20261031-2{n}1500-{job_id}")))
    for row in rows:
        row["params"] = json.dumps(params_to_dict(build_params(row["params"])))
        for key in ("metrics", "timings"):
            row[key] = json.dumps(row.get(key, {}))
        columns = ", ".join(row)
        db.execute(f"INSERT INTO jobs ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    db.commit()
    db.close()


def write_results(outputs: Path) -> None:
    """Real result videos for the newest history entry (seeded shapes: the same pixels every run)."""
    folder = outputs / f"20261031-201500-{HISTORY[0][0]}"
    for name, seed in (("original", 0), ("reconstruction", 0), ("edited", 5)):
        write_sample_clip(folder / f"{name}.mp4", num_frames=9, height=64, width=96, fps=8, seed=seed)
    (folder / "job.json").write_text("{}")


@pytest.fixture
def fixture_app(tmp_path, monkeypatch):
    """An app on the fixed store; relative output paths and UTC, so no text depends on the machine."""
    from textual_image import _terminal
    from textual_image.widget import HalfcellImage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(_terminal.get_cell_size, "_result", _terminal.CellSize(10, 20), raising=False)
    outputs = Path("outputs")
    fill_store(tmp_path / "data", outputs)
    write_results(outputs)
    config = EngineConfig(model="THUDM/CogVideoX-5b", device="cpu", output_dir=outputs)

    def launcher() -> Launch:
        return Launch(open_worker(config, root=tmp_path / "data", cache_root=tmp_path / "cache"))

    app = CogeditApp(launcher, start_engine=False, model_label="THUDM/CogVideoX-5b", device_label="cpu",
                     image_class=HalfcellImage)
    app.animation_level = "none"  # scrolls land at once: a loaded CPU once caught a list's scrollbar mid-way
    yield app
    app.close_engine()
    monkeypatch.undo()
    time.tzset()


async def settle(pilot) -> None:
    """Wait until the engine is open and every thread worker (source probe, frames) has reported."""
    app = pilot.app
    for _ in range(600):  # up to 30 s: a loaded CPU draws the preview late
        await pilot.pause(0.05)
        busy = [w for w in app.workers if w.is_running or w.state.name == "PENDING"]
        preview = app.screen.query("#preview")
        waiting = preview and preview.first().output_dir and preview.first().shown_index is None
        if app.engine is not None and app.engine_state == "not started" and not busy and not waiting:
            break
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    for widget in app.screen.query(TextArea):
        widget.cursor_blink = False
    await pilot.pause(0.1)
    previous = None
    for _ in range(100):  # and until two frames 0.2 s apart agree (a late layout pass on a loaded CPU)
        frame = app.export_screenshot()
        if frame == previous:
            break
        previous = frame
        await pilot.pause(0.2)


def run_before(*keys: str):
    async def steps(pilot) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return steps


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, fixture_app, size):
    assert snap_compare(fixture_app, terminal_size=size, run_before=run_before("down"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_new_edit_screen(snap_compare, fixture_app, size):
    assert snap_compare(fixture_app, terminal_size=size, run_before=run_before("n"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_history_screen(snap_compare, fixture_app, size):
    assert snap_compare(fixture_app, terminal_size=size, run_before=run_before("h"))


def test_the_fixture_store_reads_back_as_written(tmp_path):
    """Guards the fixture itself: a 'running' row comes back interrupted, history is newest first."""
    fill_store(tmp_path, Path("outputs"))
    store = Store(tmp_path / "cogedit.db")
    try:
        assert store.get("c0ffee0003").status == "interrupted"
        assert [r.id for r in store.history()] == ["d0d0d00001", "d0d0d00002", "d0d0d00003"]
        assert [r.id for r in store.queued()] == ["c0ffee0004", "c0ffee0005", "c0ffee0006"]
    finally:
        store.close()
