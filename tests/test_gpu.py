"""On a GPU only (skipped elsewhere): a short edit of the real CogVideoX-5B architecture, random
weights, end to end through the worker, within the memory a 48 GB card has."""

from __future__ import annotations

import pytest
import torch

from engine.bench_models import ARCHS
from engine.frames import probe_video
from engine.model import wrap_pipeline
from engine.params import build_params
from engine.sample_clip import write_sample_clip
from engine.speed import apply_speed
from engine.store import DONE
from engine.worker import EngineConfig, JobSpec, Worker

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GIB = 1024**3


def test_a_short_5b_edit_runs_through_the_worker_and_fits_48_gb(tmp_path):
    arch = ARCHS["5b"]

    def loader(device):
        model = wrap_pipeline(arch.build(torch.device(device)), arch.description, "<in memory>")
        apply_speed(model, "auto", compile_blocks=False)
        return model

    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=17, height=480, width=720, fps=8)
    worker = Worker.open(EngineConfig(model="5b", device="cuda:0", output_dir=tmp_path / "out"),
                         root=tmp_path / "data", cache_root=tmp_path / "cache", loader=loader)
    params = build_params({"num_inference_steps": 4, "max_num_frames": 17})
    try:
        torch.cuda.reset_peak_memory_stats()
        jobs = [worker.submit(JobSpec(str(clip), p, params)) for p in ("a watercolor", "a neon sign")]
        worker.start()
        assert worker.wait_idle({j.id for j in jobs}, timeout=540)
        peak = torch.cuda.max_memory_allocated()
        for job in jobs:
            record = worker.store.get(job.id)
            assert record.status == DONE, record.error
            edited = probe_video(f"{record.output_dir}/edited.mp4")
            assert (edited.num_frames, edited.width, edited.height) == (17, 720, 480)
        print(f"peak GPU memory {peak / GIB:.1f} GiB")
        assert peak < 40 * GIB
    finally:
        worker.close()
