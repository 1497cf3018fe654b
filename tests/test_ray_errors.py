"""``--cluster`` refused in one line (exit 2) before any job runs: Ray not installed, nothing at the address
(a direct one or a Ray Client ``ray://`` one)."""

from __future__ import annotations

import sys

import pytest

from engine.api import INTERRUPTED, Store, data_dir
from tui.cli import main

TINY_FLAGS = ["--height", "64", "--width", "96", "--max-num-frames", "9", "--num-inference-steps", "4"]


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cluster_without_ray_installed_names_the_extra(capsys, monkeypatch, tiny_model_path, clip_path, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees: ImportError
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    code = main(["edit", str(clip_path), "--prompt", "a cat", "--model", str(tiny_model_path), "--cluster", "auto",
                 "--output-dir", str(tmp_path / "out"), *TINY_FLAGS])
    line = _error_line(capsys.readouterr().err)
    assert code == 2 and "--cluster needs Ray" in line and "pip install 'cogedit-tui[ray]'" in line


@pytest.mark.parametrize("address, fix", [("127.0.0.1:1", "ray start --head"),  # a direct address
                                          ("ray://127.0.0.1:1", "ray://HEAD:10001")])  # Ray Client's
def test_an_address_where_nothing_listens_fails_at_once_names_the_fix_and_keeps_the_jobs(
        capsys, monkeypatch, tiny_model_path, clip_path, tmp_path, address, fix):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'cogedit-tui[ray]'")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    code = main(["edit", str(clip_path), "--prompt", "a cat", "--model", str(tiny_model_path),
                 "--cluster", address, "--output-dir", str(tmp_path / "out"), *TINY_FLAGS])
    line = _error_line(capsys.readouterr().err)
    assert code == 2
    assert f"cannot reach the Ray cluster at {address}" in line and fix in line
    store = Store(data_dir() / "cogedit.db")
    try:
        assert [job.status for job in store.jobs()] == [INTERRUPTED]  # kept, for r to re-queue; never failed
    finally:
        store.close()


def test_edit_errors_cross_a_process_boundary_whole():
    """An actor's EditError reaches the head pickled: the same type, problem and fix (a one-line reason)."""
    import pickle

    from engine.errors import OutputError

    error = pickle.loads(pickle.dumps(OutputError("disk full while writing x.mp4", "free disk space")))
    assert type(error) is OutputError and (error.problem, error.fix) == ("disk full while writing x.mp4",
                                                                          "free disk space")
    assert str(error) == "disk full while writing x.mp4 — free disk space"


def test_bench_backend_ray_is_the_queue_benchmark_only(capsys):
    from engine.bench.cli import main as bench_main

    assert bench_main(["--arch", "tiny", "--backend", "compare"]) == 2
    assert "--backend compare needs --devices" in capsys.readouterr().err


def test_a_broken_ray_client_connection_counts_as_a_lost_device_so_its_jobs_go_back_to_the_queue():
    from engine.runtime.device import DeviceLost
    from engine.runtime.ray_device import _call

    def dropped():  # what Ray Client raises once its connection to the head is gone for good
        raise ConnectionError("Failed during this or a previous request. Exception that broke the connection")

    with pytest.raises(DeviceLost, match="the connection to the Ray cluster broke"):
        _call(dropped)
