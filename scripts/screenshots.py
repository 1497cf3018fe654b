"""Regenerate the README's screenshots from a real demo run: ``python scripts/screenshots.py [--out DIR]``.

The demo runs on the trained toy model (CPU, under a minute) in a temporary data dir, so the history
holds real results; the demo's clip comes from the usual cache. Writes main.svg
(mid-run), new-edit.svg, history.svg, history-variants.svg at 120x40 and main-80x24.svg,
history-80x24.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from textual.widgets import TextArea

SIZE = (120, 40)
SMALL = (80, 24)
EXTRA_PROMPT = "a red square"


async def capture(out: Path) -> None:
    from textual_image.widget import HalfcellImage

    from engine.api import EngineConfig, JobSpec, build_params
    from engine.demo import DEMO_PARAMS, demo_clip_path
    from tui.app import build_app
    from tui.screens.history import HistoryScreen
    from tui.screens.new_edit import NewEditScreen
    from tui.widgets.frame_preview import FramePreview
    from tui.widgets.prompt_tokens import PromptTokens

    app = build_app(EngineConfig(device="cpu"), demo=True, image_class=HalfcellImage)
    async with app.run_test(size=SIZE) as pilot:
        async def until(predicate, timeout: float = 300.0) -> None:
            for _ in range(int(timeout / 0.02)):
                if predicate():
                    return
                await pilot.pause(0.02)
            raise TimeoutError("the demo did not get there in time")

        def progress(stage: str):
            return [p for job in app.store.jobs() if (p := app.tracker.get(job.id)) and p.stage == stage]

        await until(lambda: app.store is not None and len(app.store.jobs()) >= 2)
        third = build_params({**DEMO_PARAMS, "guidance_scale": 7.5})  # other settings: a batch of its own
        app.engine.submit(JobSpec(str(demo_clip_path()), EXTRA_PROMPT, third))
        await until(lambda: any(p.step >= p.total // 2 for p in progress("edit")))
        app.save_screenshot("main.svg", str(out))
        await until(lambda: all(job.status == "done" for job in app.store.jobs()))
        await pilot.pause(0.3)

        await pilot.press("n")
        await until(lambda: isinstance(app.screen, NewEditScreen))
        prompts = app.screen.query_one("#prompts", TextArea)
        prompts.text = "a blue ball\na yellow triangle"
        await until(lambda: "keep" in str(app.screen.query_one("#source-summary").render()))
        await until(lambda: app.screen.query_one(PromptTokens).counts is not None)  # each line's tokens
        await pilot.pause(0.3)
        app.save_screenshot("new-edit.svg", str(out))
        await pilot.press("escape", "h")
        await until(lambda: isinstance(app.screen, HistoryScreen))
        preview = app.screen.query_one(FramePreview)
        await until(lambda: preview.shown_index == 0)
        for _ in range(8):
            await pilot.press("full_stop")
        await until(lambda: preview.shown_index == 8)
        await pilot.pause(0.3)
        app.save_screenshot("history.svg", str(out))
        await pilot.press("down")  # a demo variant: its sibling shows beside it
        await pilot.press("v", "v", "v")  # frames, A/B, difference, the variants of the source
        await until(lambda: preview.view == "variants" and preview.shown_index is not None)
        await pilot.pause(0.3)
        app.save_screenshot("history-variants.svg", str(out))
        await pilot.press("v", "v")  # the contact sheet, then the frames again
        await until(lambda: preview.view == "frames" and preview.shown_index is not None)
        await pilot.press("up")

        await pilot.resize_terminal(*SMALL)
        await pilot.pause(0.5)
        app.save_screenshot("history-80x24.svg", str(out))
        await pilot.press("escape")
        await pilot.pause(0.5)
        app.save_screenshot("main-80x24.svg", str(out))
        await pilot.press("q")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/screenshots.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "screenshots",
                        help="folder for the SVGs [default: the repository's screenshots/]")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cogedit-screenshots-") as data:
        os.environ["XDG_DATA_HOME"] = data  # a private history: only this run's results show
        asyncio.run(capture(args.out))
    for name in sorted(args.out.glob("*.svg")):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
