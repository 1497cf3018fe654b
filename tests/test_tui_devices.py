"""The devices pane of the main screen, over a worker with two CPU devices ("cpu:0", "cpu:1"): each
device's line follows its state, memory and current job, and the header sums the devices up."""

from __future__ import annotations

import asyncio

import pytest

from engine.api import GIB, EngineConfig, EngineStopped, GpuMemory, JobSpec, WorkerState, build_params, open_worker
from engine.pipeline.model import load_model
from tui.app import CogeditApp
from tui.launch import Launch
from tui.messages import EngineEvent
from tui.widgets.devices_panel import DevicesPanel
from tui.widgets.engine_header import EngineHeader

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
SIZE = (120, 40)


def two_device_app(tmp_path, tiny_model_path, start_engine=True) -> CogeditApp:
    def loader(device):  # each device loads its own pipeline, as on two GPUs
        return load_model(str(tiny_model_path), device, "fp32")

    def launcher() -> Launch:
        config = EngineConfig(model=str(tiny_model_path), device="cpu:0,cpu:1", output_dir=tmp_path / "out")
        return Launch(open_worker(config, root=tmp_path / "data", cache_root=tmp_path / "cache", loader=loader))

    return CogeditApp(launcher, start_engine=start_engine)


def lines(app) -> dict[str, str]:
    """device -> its line in the pane, as plain text."""
    return {device: row.text for device, row in app.screen.query_one(DevicesPanel).rows.items()}


def header_state(app) -> str:
    return str(app.screen.query_one(EngineHeader).query_one("#header-state").render())


async def until(pilot, predicate, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out; devices: {lines(pilot.app)}, engine: {pilot.app.engine_state}")


@pytest.mark.slow
def test_two_devices_each_run_a_job_and_the_pane_shows_it(tmp_path, tiny_model_path, make_clip):
    app = two_device_app(tmp_path, tiny_model_path)
    params = build_params({"height": 64, "width": 96, "max_num_frames": 9, "num_inference_steps": 4})

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            # The header reads the worker's state, the pane its events: both say idle once both have loaded.
            await until(pilot, lambda: app.engine_state == "idle" and len(lines(app)) == 2
                        and all(" idle " in line for line in lines(app).values()))
            panel = app.screen.query_one(DevicesPanel)
            assert panel.display and list(lines(app)) == ["cpu:0", "cpu:1"]
            assert all(" – " in line for line in lines(app).values()), lines(app)  # no GPU memory on the CPU
            assert app.device_counts == (2, 0, 0) and "cpu:0,cpu:1 fp32" in str(
                app.screen.query_one("#header-device").render())
            jobs = app.engine.submit_many([JobSpec(str(make_clip(12)), "a red cat", params),
                                           JobSpec(str(make_clip(13)), "a blue dog", params)])
            prompts = {job.id: job.prompt for job in jobs}
            shown: dict[str, set[str]] = {"cpu:0": set(), "cpu:1": set()}  # device -> jobs shown running on it
            headers = set()
            while any(app.store.get(job_id).status in ("queued", "running") for job_id in prompts):
                for device, line in lines(app).items():
                    shown[device] |= {job_id for job_id in prompts
                                      if " running " in line and f"{job_id} “{prompts[job_id]}”" in line}
                headers.add(header_state(app))
                await pilot.pause(0.05)
            assert [app.store.get(job_id).status for job_id in prompts] == ["done", "done"]
            assert all(len(jobs_shown) == 1 for jobs_shown in shown.values()), shown  # one job on each device
            assert set.union(*shown.values()) == set(prompts)
            assert any(header.endswith("running 2/2") for header in headers), headers
            await until(pilot, lambda: all(line.split()[1] == "idle" and "“" not in line
                                           for line in lines(app).values()))
            await until(pilot, lambda: header_state(app) == "● idle")
            await pilot.press("q")

    asyncio.run(scenario())


def test_the_pane_follows_state_memory_and_failures(tmp_path, tiny_model_path):
    app = two_device_app(tmp_path, tiny_model_path, start_engine=False)  # no model loads: events are posted

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(lines(app)) == 2)
            assert all(" stopped " in line for line in lines(app).values())
            post = lambda event: app.post_message(EngineEvent(event))  # noqa: E731
            post(GpuMemory("cpu:1", 3 * GIB, 4 * GIB, 80 * GIB))
            post(GpuMemory("cpu:0", 1 * GIB, 2 * GIB, 80 * GIB))
            app.engine.runners[1].state = "retired"  # as the runner sets it before it publishes
            post(WorkerState("cpu:1", "retired", ()))
            post(EngineStopped("cpu:1 retired after a device fault", device="cpu:1"))
            await until(pilot, lambda: "retired" in lines(app)["cpu:1"])
            assert "3.0/80.0 GiB" in lines(app)["cpu:1"] and "1.0/80.0 GiB" in lines(app)["cpu:0"]
            assert lines(app)["cpu:1"].endswith("cpu:1 retired after a device fault")
            rows = app.screen.query_one(DevicesPanel).rows
            assert rows["cpu:1"].query_one(".device-state").has_class("state-retired")
            assert header_state(app) == "● not started · 1 down"
            assert "GPU 4.0/160.0 GiB" in str(app.screen.query_one("#header-gpu").render())  # the header totals
            await pilot.press("q")

    asyncio.run(scenario())
