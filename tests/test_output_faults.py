"""Writing results under hostile conditions: a full disk (a real 3 MiB tmpfs), --save-latents paths
that cannot take a file (a folder, a path under a file, a read-only mount, a character device), and
source frame rates the automatic output fps must not copy."""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest
import torch
from safetensors import SafetensorError
from test_hostile_inputs import TINY_FLAGS

from engine.errors import OutputError
from tui.cli import main


@pytest.fixture
def read_only_dir(tmpfs):
    return tmpfs("ro,size=1m")


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs("size=3m")


# -- --save-latents (item 2) ----------------------------------------------------------------------

def _latents_error(capfd, target, tiny_model_path, clip_path, tmp_path) -> str:
    out = tmp_path / "out"
    code = main(["edit", str(clip_path), "--prompt", "x", "--model", str(tiny_model_path), "--output-dir", str(out),
                 "--save-latents", str(target), *TINY_FLAGS])
    _, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err and "latents:" not in err, err
    return lines[0]


def test_save_latents_to_a_directory_is_refused_before_the_edit(capfd, tiny_model_path, clip_path, tmp_path):
    line = _latents_error(capfd, tmp_path, tiny_model_path, clip_path, tmp_path)
    assert f"cannot write {tmp_path}: it is a directory, not a file" in line and "--save-latents" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # refused before any edit


def test_save_latents_under_a_file(capfd, tiny_model_path, clip_path, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    line = _latents_error(capfd, tmp_path / "notes.txt" / "l.safetensors", tiny_model_path, clip_path, tmp_path)
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in line


def test_save_latents_in_a_read_only_folder(capfd, tiny_model_path, clip_path, tmp_path, read_only_dir):
    line = _latents_error(capfd, read_only_dir / "l.safetensors", tiny_model_path, clip_path, tmp_path)
    assert f"cannot write to {read_only_dir} (permission denied)" in line


def test_save_latents_never_replaces_a_character_device(capfd, tiny_model_path, clip_path, tmp_path):
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node is not permitted here")
    line = _latents_error(capfd, device, tiny_model_path, clip_path, tmp_path)
    assert "it is a character device, not a file" in line
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_the_final_rename_never_replaces_a_character_device(tmp_path):
    """A device that takes the name while the file is written is left alone."""
    from engine.output.atomic import atomic_path

    device = tmp_path / "l.safetensors"
    with pytest.raises(OutputError, match="character device"), atomic_path(device, suffix=".safetensors") as tmp:
        tmp.write_bytes(b"x")
        try:
            os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node is not permitted here")
    assert stat.S_ISCHR(os.stat(device).st_mode) and [p.name for p in tmp_path.iterdir()] == ["l.safetensors"]


def _inversion(megabytes: int) -> tuple[SimpleNamespace, list[SimpleNamespace]]:
    def big():
        return torch.zeros(megabytes << 18)  # float32: 4 bytes each

    return (SimpleNamespace(source_latents=big(), trajectory=big(), round_trip_latents=big()),
            [SimpleNamespace(latents=big())])


def test_write_latents_on_a_full_disk(small_disk):
    """safetensors raises SafetensorError (not OSError) when the disk fills: it becomes one line."""
    from engine.pipeline.export import write_latents

    with pytest.raises(OutputError, match="cannot write the latents to .*l.safetensors") as caught:
        write_latents(small_disk / "l.safetensors", *_inversion(2))
    assert isinstance(caught.value.__cause__, SafetensorError)
    assert os.listdir(small_disk) == []


def test_a_latents_write_that_fails_after_the_edit_exits_2_and_keeps_the_results(capfd, tiny_model_path, clip_path,
                                                                                  tmp_path, tmpfs):
    """The path passes the early check, then the disk fills: the results stay, the command says so."""
    tiny_disk = tmpfs("size=8k")
    out = tmp_path / "out"
    code = main(["edit", str(clip_path), "--prompt", "x", "--model", str(tiny_model_path), "--output-dir",
                 str(out), "--save-latents", str(tiny_disk / "l.safetensors"), *TINY_FLAGS])
    printed, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "the latents were not saved to" in lines[0] and "results are saved" in lines[0]
    assert "latents:" not in printed + err
    (folder,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert (folder / "edited.mp4").is_file()
