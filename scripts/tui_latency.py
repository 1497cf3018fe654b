"""Key-to-screen latency of the workstation while a job runs on the CPU (a benchmark, not a test).

Drives the app with Pilot over the real worker on the tiny model (a private temporary data dir; the
demo's clip), with a long edit running, and times from posting a key to the screen showing its effect:
opening the new-edit form (``n``), typing into it (one character), closing it (``esc``), opening and
closing the history (``h``, ``esc``). Prints
the median and the worst of each over ``--rounds`` rounds.

    .venv/bin/python scripts/tui_latency.py [--rounds 5] [--steps 400] [--idle]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from textual import events


async def latency(pilot, keys: list[str], done, timeout: float = 30.0) -> float:
    """Seconds from posting ``keys`` (as a typist: straight into the app's queue) until ``done()``."""
    start = time.perf_counter()
    for key in keys:
        pilot.app.post_message(events.Key(key, key if len(key) == 1 else None))
    while not done():
        if time.perf_counter() - start > timeout:
            return float("inf")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start


def typed(field) -> int:
    return len(getattr(field, "value", None) or getattr(field, "text", ""))


async def measure(app, rounds: int, idle: bool) -> dict[str, list[float]]:
    from textual.widgets import Input, TextArea

    from tui.screens.new_edit import NewEditScreen

    figures: dict[str, list[float]] = {"open form (n)": [], "type a character": [], "close form (esc)": [],
                                       "open history (h)": [], "close history (esc)": []}
    async with app.run_test(size=(120, 40)) as pilot:
        while app.store is None or (not idle and not any(r.status == "running" for r in app.store.jobs())):
            await pilot.pause(0.1)
        if not idle:
            await pilot.pause(3.0)  # into the steps
        for _ in range(rounds):
            form_ready = lambda: isinstance(app.screen, NewEditScreen) and isinstance(app.focused, (Input, TextArea))  # noqa: E731
            figures["open form (n)"].append(await latency(pilot, ["n"], form_ready))
            field = app.focused
            before = typed(field)
            figures["type a character"].append(await latency(
                pilot, ["a"], lambda field=field, before=before: typed(field) > before))
            figures["close form (esc)"].append(await latency(
                pilot, ["escape"], lambda: app.screen.id == "main"))
            await pilot.pause(0.5)
            figures["open history (h)"].append(await latency(
                pilot, ["h"], lambda: app.screen.id == "history" and app.focused is not None))
            figures["close history (esc)"].append(await latency(
                pilot, ["escape"], lambda: app.screen.id == "main"))
            await pilot.pause(0.5)
        running = [r for r in app.store.jobs() if r.status == "running"]
        if not idle and not running:
            print("warning: the job ended before the measurements did; use more --steps")
        app.exit()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400, help="steps of the running edit (long enough to last)")
    parser.add_argument("--idle", action="store_true", help="no job running")
    args = parser.parse_args()

    from engine.api import EngineConfig, JobSpec, build_params, open_worker
    from engine.demo import DEMO_PARAMS, prepare_demo
    from engine.pipeline.model import load_model
    from tui.app import CogeditApp
    from tui.launch import Launch

    model_path, clip = prepare_demo()
    model = load_model(model_path, device="cpu", dtype="fp32")
    root = Path(tempfile.mkdtemp(prefix="cogedit-latency-"))
    params = build_params({**DEMO_PARAMS, "num_inference_steps": args.steps})
    jobs = [] if args.idle else [JobSpec(str(clip), "a slow cat", params)]

    def launcher() -> Launch:
        # The toy model's folder: the form's token counter reads its tokenizer, as in the demo.
        worker = open_worker(EngineConfig(model=str(model_path), device="cpu", output_dir=root / "out"),
                             root=root / "data", cache_root=root / "cache", loader=lambda device: model)
        return Launch(worker, jobs)

    app = CogeditApp(launcher, form_presets={"demo": params}, form_preset="demo")
    figures = asyncio.run(measure(app, args.rounds, args.idle))
    print(f"key-to-screen latency, {'idle' if args.idle else 'a CPU job running'}, {args.rounds} rounds:")
    for name, values in figures.items():
        print(f"  {name:<20} median {statistics.median(values) * 1000:7.0f} ms   worst {max(values) * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
