"""A model that outputs NaN: the job fails with a reason and a fix; nothing non-finite is written."""

from __future__ import annotations

import pytest
from conftest import finished, open_worker

from engine.runtime.worker import JobSpec


def test_a_model_that_outputs_nan_fails_the_job_with_a_reason_and_writes_nothing(tmp_path, tiny_model_path,
                                                                                clip_path, tiny_params):
    import torch

    from engine.pipeline.model import load_model

    model = load_model(str(tiny_model_path), device="cpu", dtype="fp32")
    with torch.no_grad():  # a diverged fine-tune: one weight of the transformer's output is NaN
        model.pipeline.transformer.proj_out.weight[0, 0] = float("nan")
    worker, rec = open_worker(tmp_path, model)
    try:
        job = worker.submit(JobSpec(str(clip_path), "a cat", tiny_params()))
        worker.start()
        rec.wait_for(finished([job.id]), timeout=120)
        record = worker.store.get(job.id)
    finally:
        worker.close()
    assert record.status == "failed"
    assert "NaN" in record.error and "--dtype fp32" in record.error and not record.error.startswith("unexpected")
    assert not list((tmp_path / "out").iterdir())  # no result folder, no staging left
    assert not list((tmp_path / "cache" / "inversions").glob("*.safetensors"))  # a NaN inversion is not cached


def test_job_json_is_strict_json_even_when_a_metric_is_not_finite(tmp_path):
    import json

    from engine.output.atomic import write_json_atomic

    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "job.json", {"metrics": {"psnr": float("nan")}})
    assert not (tmp_path / "job.json").exists()
    write_json_atomic(tmp_path / "job.json", {"metrics": {"psnr": None}})
    json.loads((tmp_path / "job.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in job.json"))
