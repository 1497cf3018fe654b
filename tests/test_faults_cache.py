"""The inversion cache under faults: a full or read-only cache disk, corrupt or malformed entries, a
fine-tune saved again into the same folder. Disks are real tmpfs mounts (skipped where mounting is
not permitted); corrupt entries are real files damaged on disk."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess

import pytest
import torch
from conftest import fill_disk, run_jobs
from safetensors.torch import load_file, safe_open, save_file

import engine.pipeline.inversion_cache as inversion_cache
from engine.events import EditWarning, StageFinished
from engine.runtime.worker import JobSpec
from engine.store import DONE


def _cached(rec) -> bool:
    (invert,) = rec.of(StageFinished, stage="invert")
    return invert.cached


def _entry(tmp_path):
    (entry,) = (tmp_path / "cache" / "inversions").glob("*.safetensors")
    return entry


def test_a_full_cache_disk_keeps_the_inversion_in_memory_and_the_job_goes_on(tmp_path, small_tmpfs, tiny_model,
                                                                            clip_path, tiny_params):
    cache = small_tmpfs("cache")
    (cache / "inversions").mkdir()
    fill_disk(cache)  # safetensors raises its own SafetensorError here, not an OSError
    rec, (job,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    assert job.status == DONE, job.error
    assert any("could not be cached on disk" in w.message for w in rec.of(EditWarning))
    assert not list((cache / "inversions").iterdir())  # no partial entry left behind


def test_a_read_only_cache_serves_its_entries(tmp_path, small_tmpfs, tiny_model, clip_path, tiny_params):
    cache = small_tmpfs("cache", size="16m")
    run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    assert _entry(tmp_path).is_file()
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(cache)], capture_output=True, text=True)
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount read-only here ({remounted.stderr.strip()[:80]})")
    rec, (job,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a dog", tiny_params())])
    assert job.status == DONE, job.error
    assert _cached(rec)


def _data_range(path, name):
    """The byte range of tensor ``name`` in a safetensors file, from its header."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    start, end = json.loads(raw[8:8 + length])[name]["data_offsets"]
    return 8 + length + start, 8 + length + end


def test_finite_but_corrupt_bytes_in_a_cache_entry_are_caught_by_its_checksum(tmp_path, tiny_model, clip_path,
                                                                              tiny_params):
    run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    entry = _entry(tmp_path)
    start, end = _data_range(entry, "trajectory")
    with open(entry, "r+b") as handle:  # bit rot: a run of zeros (finite floats) inside the trajectory
        handle.seek((start + end) // 2 // 4 * 4)
        handle.write(b"\0" * 64)
    rec, (job,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a dog", tiny_params())])
    assert any("checksum" in w.message for w in rec.of(EditWarning))
    assert not _cached(rec) and job.status == DONE


def _rewrite(entry, change):
    """Write ``entry`` again with its key, after ``change(tensors, metadata)``, with a valid checksum."""
    with safe_open(str(entry), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(entry))
    change(tensors, metadata)
    checksum = getattr(inversion_cache, "tensors_checksum", None)
    if checksum is not None:
        metadata["checksum"] = checksum(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(entry), metadata=metadata)


MALFORMED = {
    "a wrong shape": lambda t, m: t.update(source_latents=t["source_latents"][:, :1].clone()),
    "a wrong dtype": lambda t, m: t.update(source_latents=t["source_latents"].double(),
                                           round_trip_latents=t["round_trip_latents"].double()),
    "metrics of the wrong type": lambda t, m: m.update(metrics=json.dumps({"psnr_round_trip_vs_original_db": "high"})),
    "metrics not a table": lambda t, m: m.update(metrics="[1, 2]"),
}


@pytest.mark.parametrize("damage", list(MALFORMED))
def test_a_malformed_cache_entry_with_the_right_key_is_replaced_not_fatal(tmp_path, tiny_model, clip_path,
                                                                          tiny_params, damage):
    run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    entry = _entry(tmp_path)
    _rewrite(entry, MALFORMED[damage])
    rec, (job,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a dog", tiny_params())])
    assert job.status == DONE, job.error
    assert not _cached(rec) and any("unusable" in w.message for w in rec.of(EditWarning))
    rec, (later,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a bird", tiny_params())])
    assert later.status == DONE and _cached(rec)  # the entry was replaced by a good one


def test_a_fine_tune_saved_again_into_the_same_folder_does_not_reuse_the_old_inversion(tmp_path, tiny_model_path,
                                                                                       clip_path, tiny_params):
    from engine.pipeline.model import load_model

    folder = tmp_path / "my-finetune"
    shutil.copytree(tiny_model_path, folder)
    first = load_model(str(folder), device="cpu", dtype="fp32")
    rec, (job,) = run_jobs(tmp_path, first, [JobSpec(str(clip_path), "a cat", tiny_params())])
    assert job.status == DONE and not _cached(rec)
    with torch.no_grad():  # another training step, saved over the previous checkpoint
        first.pipeline.transformer.proj_out.weight.mul_(1.01)
    first.pipeline.transformer.save_pretrained(folder / "transformer")
    second = load_model(str(folder), device="cpu", dtype="fp32")
    rec, (job,) = run_jobs(tmp_path, second, [JobSpec(str(clip_path), "a dog", tiny_params())])
    assert job.status == DONE and not _cached(rec)
    rec, (job,) = run_jobs(tmp_path, second, [JobSpec(str(clip_path), "a bird", tiny_params())])
    assert job.status == DONE and _cached(rec)  # the same checkpoint still reuses its own inversion
