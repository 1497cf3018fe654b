"""The Ray backend's scenarios on a local two-node Ray cluster, run by tests/test_ray_cluster.py inside a
private network namespace (so every Ray process binds to 127.0.0.1 only), one cluster for all of them:

spread   four variants of one clip over both nodes; the result folders land in the head's output folder
actor    the actor running a job is killed mid-edit: the job goes back to the queue and finishes elsewhere
node     the node running a job is removed mid-edit: the same, and a node that joins later gets work
retire   a GPU fault (raised by the model, as a failing GPU would) retires that device; the others go on
cancel   a job cancelled mid-edit stops on its node within a step or so
cli      ``cogedit-tui edit --cluster ray://127.0.0.1:10001 --events jsonl`` in its own process, through
         Ray Client (the head's client server): its jobs land in its output folder, its events name the node
tui      the app over the cluster: the Devices pane lists both nodes

Usage: python tests/ray_scenarios.py REPORT.json MODEL_DIR CLIP... (writes what it saw as JSON).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from engine.api import (
    EditWarning,
    EngineConfig,
    EngineReady,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobQueued,
    JobSpec,
    JobStarted,
    StepProgress,
    build_params,
)
from engine.runtime.worker import Worker

NODE = {"num_cpus": 2, "object_store_memory": 80 * 2**20}  # small: the tiny model's clips and results
# Notice a dead node within about a second (Ray's default waits tens of seconds).
FAST_HEALTH = {"health_check_period_ms": 300, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}
PARAMS = {"height": 64, "width": 96, "max_num_frames": 9, "num_inference_steps": 4}
LONG = PARAMS | {"num_inference_steps": 40}  # long enough to be caught mid-edit
TIMEOUT = 240.0
CLIENT_PORT = 10001  # the head's Ray Client server (what `ray start --head` starts there by default)


class Events:
    def __init__(self, worker: Worker):
        self.items: list = []
        worker.subscribe(self.items.append)

    def of(self, kind, **match) -> list:
        return [e for e in list(self.items)
                if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]

    def wait(self, predicate, what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; last events: {self.items[-6:]}")
            time.sleep(0.05)

    def ended(self, job_ids) -> bool:
        return {e.job_id for e in self.of((JobFinished, JobFailed, JobCancelled))} >= set(job_ids)


def job_report(worker: Worker, events: Events, job_id: str) -> dict:
    record = worker.store.get(job_id)
    folder = Path(record.output_dir) if record.output_dir else None
    job_file = json.loads((folder / "job.json").read_text()) if folder and (folder / "job.json").is_file() else {}
    return {"status": record.status, "error": record.error, "output_dir": record.output_dir,
            "files": sorted(p.name for p in folder.iterdir()) if folder and folder.is_dir() else [],
            "job_output_dir": job_file.get("output_dir"), "job_source": job_file.get("source", {}).get("path"),
            "job_device": job_file.get("device"), "source": record.source,
            "started_on": [e.device for e in events.of(JobStarted, job_id=job_id)],
            "requeued": len(events.of(JobQueued, job_id=job_id)) - 1}


def wait_devices(worker: Worker, events: Events, count: int) -> None:
    events.wait(lambda: len(worker.runners) >= count and all(r.state == "idle" for r in worker.runners),
                f"{count} idle devices (have {[(r.device, r.state) for r in worker.runners]})")


def mid_edit(events: Events, job_id: str) -> bool:
    return any(e.stage == "edit" and e.step >= 2 for e in events.of(StepProgress) if job_id in e.job_ids)


def runner_of(worker: Worker, job_id: str):
    return next(r for r in worker.runners if job_id in r.running)


FAULT_FLAG = "fault-on-node"


class FaultyLoader:
    """The engine's own loader, whose transformer raises a CUDA fault while ``flag`` names its node (what a
    GPU that fails mid-job does; the CPU has none to fail). Defined in the script: it pickles by value."""

    def __init__(self, model: str, flag: str):
        self.model, self.flag = model, flag

    def __call__(self, device: str):
        from engine.runtime.worker import device_loader

        loaded = device_loader(EngineConfig(model=self.model))(device)
        transformer, flag = loaded.pipeline.transformer, Path(self.flag)
        forward = transformer.forward

        def faulty(*args, **kwargs):
            if flag.is_file() and flag.read_text() == ray.get_runtime_context().get_node_id():
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return forward(*args, **kwargs)

        transformer.forward = faulty
        return loaded


def retire_a_faulty_gpu(worker: Worker, events: Events, node_id: str, clips, out: Path) -> dict:
    """A GPU fault on ``node_id``'s device mid-job: that job fails, the device is retired (no new actor
    takes its place), and the queue goes on on the other."""
    wait_devices(worker, events, 2)
    (out / FAULT_FLAG).write_text(node_id)
    jobs = worker.submit_many([JobSpec(clips[6], "on a failing GPU", build_params(PARAMS)),
                               JobSpec(clips[7], "on a sound GPU", build_params(PARAMS))])
    events.wait(lambda: events.ended([j.id for j in jobs]), "the jobs on a failing GPU")
    time.sleep(1.5)  # several looks of the watcher: it must not replace a retired device
    after = worker.submit(JobSpec(clips[6], "after the fault", build_params(PARAMS)))
    events.wait(lambda: events.ended([after.id]), "the job after the fault")
    faulty = next(r.device for r in worker.runners if r.compute.node_id == node_id)
    return {"faulty": faulty, "jobs": [job_report(worker, events, j.id) for j in jobs],
            "after": job_report(worker, events, after.id),
            "devices": {r.device: r.state.value for r in worker.runners}}


def main(report_path: str, model: str, *clips: str) -> None:
    report: dict = {}
    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args=NODE | {
        "include_dashboard": False, "_system_config": FAST_HEALTH, "ray_client_server_port": CLIENT_PORT})
    try:
        second = cluster.add_node(**NODE)
        ray.init(address=cluster.address, log_to_driver=False)
        report["startup_s"] = time.monotonic() - started
        out = Path(report_path).parent
        config = EngineConfig(model=model, cluster=cluster.address, output_dir=out / "results")
        worker = Worker.open(config, root=out / "data", cache_root=out / "cache",
                             loader=FaultyLoader(model, str(out / FAULT_FLAG)))
        worker.cluster.watch_seconds = 0.3
        events = Events(worker)
        try:
            worker.start()
            wait_devices(worker, events, 2)
            report["nodes"] = [{"id": n["NodeID"], "address": n["NodeManagerAddress"]} for n in ray.nodes()]
            report["devices"] = [r.device for r in worker.runners]
            report["ready_devices"] = [e.device for e in events.of(EngineReady)]
            report["second_node"] = second.node_id
            report["actor_threads"] = [ray.get(r.compute.actor.cpu_threads.remote()) for r in worker.runners]

            jobs = worker.submit_many([JobSpec(clips[0], f"variant {i}", build_params(PARAMS)) for i in range(4)])
            events.wait(lambda: events.ended([j.id for j in jobs]), "the four variants")
            report["spread"] = [job_report(worker, events, j.id) for j in jobs]
            report["output_dir"] = str(config.output_dir)

            wait_devices(worker, events, 2)
            job = worker.submit(JobSpec(clips[1], "a killed actor", build_params(LONG)))
            events.wait(lambda: mid_edit(events, job.id), "the job's edit")
            killed = runner_of(worker, job.id)
            ray.kill(killed.compute.actor)
            events.wait(lambda: events.ended([job.id]), "the job after its actor died")
            report["actor"] = job_report(worker, events, job.id) | {"killed": killed.device}
            report["actor_warnings"] = [e.message for e in events.of(EditWarning) if job.id in e.job_ids]

            wait_devices(worker, events, 2)  # the killed actor's node got a new one
            report["devices_after_actor"] = [r.device for r in worker.runners]
            cancelled = worker.submit(JobSpec(clips[1], "cancelled mid-edit", build_params(LONG)))
            events.wait(lambda: mid_edit(events, cancelled.id), "the cancelled job's edit")
            worker.cancel(cancelled.id)
            events.wait(lambda: events.ended([cancelled.id]), "the cancel")
            report["cancel"] = job_report(worker, events, cancelled.id) | {
                "steps_after": max(e.step for e in events.of(StepProgress) if cancelled.id in e.job_ids
                                   and e.stage == "edit")}
            wait_devices(worker, events, 2)
            pair = worker.submit_many([JobSpec(clips[2], "one of two", build_params(LONG)),
                                       JobSpec(clips[3], "two of two", build_params(LONG))])
            on_second = {r.device for r in worker.runners if r.compute.node_id == second.node_id}
            events.wait(lambda: {e.device for e in events.of(JobStarted) if e.job_id in {j.id for j in pair}}
                        >= on_second, "a job on the second node")
            doomed = next(j for j in pair if events.of(JobStarted, job_id=j.id)[0].device in on_second)
            events.wait(lambda: mid_edit(events, doomed.id), "the second node's job's edit")
            report["node_killed_device"] = runner_of(worker, doomed.id).device
            cluster.remove_node(second, allow_graceful=False)
            events.wait(lambda: events.ended([j.id for j in pair]), "the jobs after the node died")
            report["node"] = {"doomed": job_report(worker, events, doomed.id),
                              "other": job_report(worker, events, next(j.id for j in pair if j is not doomed))}
            report["devices_after_node"] = [r.device for r in worker.runners]

            joined = cluster.add_node(**NODE)
            wait_devices(worker, events, 2)
            # Sources no device holds yet: a device holding one would be left it.
            later = worker.submit_many([JobSpec(clips[4], "after the join", build_params(PARAMS)),
                                        JobSpec(clips[5], "after the join too", build_params(PARAMS))])
            events.wait(lambda: events.ended([j.id for j in later]), "the jobs after a node joined")
            report["joined"] = {"node": joined.node_id, "jobs": [job_report(worker, events, j.id) for j in later],
                                "devices": {r.device: r.compute.node_id for r in worker.runners}}
            report["retire"] = retire_a_faulty_gpu(worker, events, joined.node_id, clips, out)
        finally:
            worker.close()
        report["cli"] = run_cli(f"ray://127.0.0.1:{CLIENT_PORT}", model, clips[0], out)
        proxy_log = Path(cluster.head_node.get_logs_dir_path()) / "ray_client_server.err"
        report["cli"]["client_connections"] = proxy_log.read_text().count("New data connection from client")
        report["tui"] = asyncio.run(run_tui(cluster.address, model, out))
        report["nodes_final"] = [n["NodeManagerAddress"] for n in ray.nodes()]
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report["total_s"] = time.monotonic() - started
        Path(report_path).write_text(json.dumps(report, indent=1))
        ray.shutdown()
        cluster.shutdown()


def run_cli(address: str, model: str, clip: str, out: Path) -> dict:
    """The headless command over the cluster, as a user types it: its own process, reaching the head
    through Ray Client (``address``: ``ray://127.0.0.1:PORT``)."""
    latents = out / "cli-latents.safetensors"
    args = ["edit", clip, "--prompt", "from the command line", "--prompt", "through Ray Client", "--cluster",
            address, "--model", model, "--events", "jsonl", "--output-dir", str(out / "cli-results"),
            "--save-latents", str(latents), *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in PARAMS.items()), [])]
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).with_name("cogedit-tui")), *args], capture_output=True,
                          text=True, timeout=TIMEOUT, env=os.environ | {"XDG_DATA_HOME": str(out / "cli-data")})
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    from safetensors import safe_open

    with safe_open(str(latents), "pt") as saved:
        latent_names = sorted(saved.keys())
    results = sorted((out / "cli-results").iterdir())
    return {"status": done.returncode, "stderr": done.stderr[-2000:], "seconds": time.monotonic() - started,
            "devices": sorted({e["device"] for e in lines if e.get("device")}), "latents": latent_names,
            "finished": [e["job_id"] for e in lines if e["event"] == "job_finished"],
            "finished_dirs": [e["output_dir"] for e in lines if e["event"] == "job_finished"],
            "results": [p.name for p in results], "output_dir": str(out / "cli-results"),
            "job_devices": [json.loads((p / "job.json").read_text())["device"] for p in results if p.is_dir()],
            "events": sorted({e["event"] for e in lines})}


async def run_tui(address: str, model: str, out: Path) -> dict:
    """The app over the cluster: what its Devices pane shows once both nodes have loaded."""
    from tui.app import CogeditApp
    from tui.launch import standard_launcher
    from tui.widgets.devices_panel import DevicesPanel

    config = EngineConfig(model=model, cluster=address, output_dir=out / "tui-results")
    app = CogeditApp(standard_launcher(config))
    async with app.run_test(size=(140, 40)) as pilot:
        rows = lambda: {device: row.text for device, row in app.screen.query_one(DevicesPanel).rows.items()}  # noqa: E731
        for _ in range(int(TIMEOUT / 0.1)):
            if len(rows()) >= 2 and all(" idle " in line for line in rows().values()):
                break
            await pilot.pause(0.1)
        seen = {"rows": rows(), "visible": app.screen.query_one(DevicesPanel).display,
                "header": str(app.screen.query_one("#header-device").render())}
        await pilot.press("q")
    return seen


if __name__ == "__main__":
    main(*sys.argv[1:])
