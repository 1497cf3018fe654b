"""The Ray backend (``--cluster``) on a local two-node Ray cluster running the tiny model on the CPU.

The cluster and every scenario run once, in one subprocess inside a private network namespace
(``unshare -n``, loopback up): Ray binds to the machine's network address otherwise, and test traffic
must stay on loopback. tests/ray_scenarios.py runs them and reports what it saw; each test here checks
one part of that report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]
SCRIPT = Path(__file__).with_name("ray_scenarios.py")
RUN_SECONDS = 600
RESULT_FILES = ("edited.mp4", "original.mp4", "reconstruction.mp4", "contact_sheet.png", "job.json")


def _namespace_problem() -> str | None:
    """Why a private network namespace cannot be had here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace here (run as root): {probe.stderr.strip()[:120]}"
    return None


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model_path, make_clip) -> dict:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'cogedit-tui[ray]'")
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)
    out = tmp_path_factory.mktemp("ray")
    report_path = out / "report.json"
    clips = [str(make_clip(n)) for n in range(12, 20)]  # a fresh source for each scenario that needs one
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
               sys.executable, "-u", str(SCRIPT), str(report_path), str(tiny_model_path), *clips]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, cwd=SCRIPT.parent.parent)
    try:
        output, _ = process.communicate(timeout=RUN_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    seen = json.loads(report_path.read_text()) if report_path.is_file() else {}
    assert process.returncode == 0 and "error" not in seen, f"{seen.get('error')}\n{output[-4000:]}"
    return seen


def node_of(device: str) -> str:
    """``127.0.0.1-3f9a1c:cpu:0`` -> ``127.0.0.1-3f9a1c``."""
    return device.rsplit(":", 2)[0]


def test_every_node_listens_on_loopback_only(report):
    assert len(report["nodes"]) == 2
    assert all(node["address"] == "127.0.0.1" for node in report["nodes"]), report["nodes"]
    assert all(address == "127.0.0.1" for address in report["nodes_final"])


def test_one_device_per_node_named_after_it(report):
    devices = report["devices"]
    assert len(devices) == 2 and len({node_of(d) for d in devices}) == 2, devices
    assert sorted(report["ready_devices"]) == sorted(devices)  # each loaded its model once, on its node


def test_each_actor_computes_on_its_nodes_cpus_not_on_the_one_thread_ray_gives_it(report):
    # Ray starts actors with OMP_NUM_THREADS=1; the frames, the export and a CPU model would run on one core
    assert report["actor_threads"] == [2, 2], report["actor_threads"]  # each node has 2 CPUs, one actor


def test_variants_spread_over_both_nodes_and_land_on_the_head(report):
    jobs = report["spread"]
    assert [job["status"] for job in jobs] == ["done"] * 4, jobs
    assert {job["started_on"][0] for job in jobs} == set(report["devices"])  # both nodes ran some
    output_dir = Path(report["output_dir"])
    for job in jobs:
        folder = Path(job["output_dir"])
        assert folder.parent == output_dir and folder.is_dir()
        assert set(RESULT_FILES) <= set(job["files"])
        assert job["job_output_dir"] == job["output_dir"]  # job.json names the head's copy, not the node's
        assert job["job_source"] == job["source"] and job["job_device"] == job["started_on"][0]
    assert not [p for p in output_dir.iterdir() if p.name.startswith(".partial-")]  # nothing half-landed


def test_a_killed_actor_requeues_its_job_which_finishes_elsewhere(report):
    job = report["actor"]
    assert job["status"] == "done", job
    assert job["started_on"][0] == job["killed"] and job["started_on"][-1] != job["killed"], job
    assert job["requeued"] == 1
    assert any("went away" in message and "back to the queue" in message for message in report["actor_warnings"])
    # The node whose actor died got a new one.
    assert sorted(node_of(d) for d in report["devices_after_actor"]) == sorted(node_of(d) for d in report["devices"])


def test_a_cancel_reaches_the_node_running_the_job(report):
    job = report["cancel"]
    assert job["status"] == "cancelled" and job["files"] == [], job
    assert job["steps_after"] < 40  # stopped mid-edit, not run to its end


def test_a_dead_node_requeues_its_job_and_a_node_that_joins_gets_work(report):
    doomed, other = report["node"]["doomed"], report["node"]["other"]
    assert doomed["status"] == other["status"] == "done", report["node"]
    assert doomed["started_on"][0] == report["node_killed_device"] and doomed["requeued"] == 1
    assert node_of(doomed["started_on"][-1]) != node_of(report["node_killed_device"])
    assert len(report["devices_after_node"]) == 1  # the dead node's device left the worker
    joined = report["joined"]
    joined_devices = {d for d, node in joined["devices"].items() if node == joined["node"]}
    assert len(joined_devices) == 1
    assert [job["status"] for job in joined["jobs"]] == ["done", "done"]
    assert any(job["started_on"][0] in joined_devices for job in joined["jobs"]), joined


def test_a_gpu_fault_retires_that_device_and_the_queue_goes_on(report):
    retire = report["retire"]
    faulty = retire["faulty"]
    by_device = {job["started_on"][0]: job for job in retire["jobs"]}
    assert by_device[faulty]["status"] == "failed" and f"GPU {faulty} failed" in by_device[faulty]["error"]
    assert [job["status"] for device, job in by_device.items() if device != faulty] == ["done"]
    assert retire["devices"][faulty] == "retired" and len(retire["devices"]) == 2  # not replaced
    assert retire["after"]["status"] == "done" and retire["after"]["started_on"] != [faulty]


def test_the_headless_command_runs_through_ray_client_names_the_node_and_brings_results_and_latents_back(report):
    cli = report["cli"]  # cogedit-tui edit --cluster ray://127.0.0.1:10001, in its own process
    assert cli["status"] == 0, cli
    assert len(cli["finished"]) == 2 and "job_failed" not in cli["events"], cli  # both prompts' jobs
    assert cli["devices"] and all(node_of(d).startswith("127.0.0.1") for d in cli["devices"]), cli
    # Each result folder landed whole in the head's output folder, and its job.json names the node's device.
    assert len(cli["results"]) == 2 and not any(name.startswith(".") for name in cli["results"]), cli
    assert all(Path(folder).parent == Path(cli["output_dir"]) for folder in cli["finished_dirs"]), cli
    assert cli["job_devices"] and set(cli["job_devices"]) <= set(cli["devices"]), cli
    assert cli["client_connections"] == 1  # it went through the head's Ray Client server
    # --save-latents came back (one batch: the two variants were kept together for it)
    assert {"source", "inversion", "reconstruction", "edited_0", "edited_1"} <= set(cli["latents"]), cli


def test_the_devices_pane_lists_both_nodes(report):
    tui = report["tui"]
    assert tui["visible"] and len(tui["rows"]) == 2, tui
    assert len({node_of(d) for d in tui["rows"]}) == 2
    assert all(" idle " in line and device in line for device, line in tui["rows"].items()), tui
    assert tui["header"] == "2× cpu on 2 nodes fp32"
