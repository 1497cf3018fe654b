"""On a GPU only (skipped elsewhere): a short edit of the real CogVideoX-5B architecture, random
weights, end to end through the worker, within the memory a 48 GB card has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.api import GIB
from engine.bench.models import ARCHS
from engine.demo.sample_clip import write_sample_clip
from engine.kernels.select import apply_speed
from engine.params import build_params
from engine.pipeline.frames import probe_video
from engine.pipeline.model import wrap_pipeline
from engine.runtime.worker import EngineConfig, JobSpec, Worker
from engine.store import DONE

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("fp8", [False, True], ids=["bf16", "fp8"])
def test_a_short_5b_edit_runs_through_the_worker_and_fits_48_gb(tmp_path, fp8):
    if fp8:
        pytest.importorskip("torchao")
    arch = ARCHS["5b"]

    def loader(device):
        model = wrap_pipeline(arch.build(torch.device(device)), arch.description, "<in memory>")
        apply_speed(model, "auto", compile_blocks=False, fp8=fp8, keep_exact=not fp8)  # as an --fp8 worker
        print(f"attention: {model.attention}")
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
            written = json.loads((Path(record.output_dir) / "job.json").read_text())
            assert ("linear_layers" in written["model"]) == fp8  # an approximate result says so
        print(f"peak GPU memory {peak / GIB:.1f} GiB")
        assert peak < 40 * GIB
    finally:
        worker.close()


def _one_5b_block() -> torch.nn.Module:
    from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock

    from engine.bench.models import TRANSFORMER_5B

    c = TRANSFORMER_5B
    g = torch.Generator("cuda").manual_seed(0)
    with torch.device("cuda"):
        block = CogVideoXBlock(c["num_attention_heads"] * c["attention_head_dim"], c["num_attention_heads"],
                               c["attention_head_dim"], c["time_embed_dim"], activation_fn=c["activation_fn"],
                               attention_bias=True).to(torch.bfloat16).eval()
        for p in block.parameters():  # diffusers' init leaves some weights zero: draw them all
            p.data = torch.randn(p.shape, generator=g, device="cuda", dtype=p.dtype) * 0.02
    return block


def test_the_fused_gelu_is_diffusers_feed_forward_up_to_bf16_rounding():
    from engine.kernels.fused_gelu import with_fused_gelu

    block = _one_5b_block()
    x = torch.randn(2, 4096, 3072, device="cuda", dtype=torch.bfloat16,
                    generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        plain, fused = block.ff(x).float(), with_fused_gelu(block).ff(x).float()
    assert (fused - plain).abs().max() <= 2e-2 * plain.abs().max()  # one bf16 rounding apart, not another GELU
    assert (fused - plain).abs().mean() <= 1e-2 * plain.abs().mean()


def test_fp8_blocks_run_close_to_bf16_but_not_equal():
    pytest.importorskip("torchao")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 needs compute capability 8.9+")
    from engine.kernels.fp8 import fp8_blocks

    block = _one_5b_block()
    (quantized,) = fp8_blocks(torch.nn.ModuleList([block]))
    x = torch.randn(2, 4096, 3072, device="cuda", dtype=torch.bfloat16,
                    generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        exact, fp8 = block.ff(x).float(), quantized.ff(x).float()
    error = (fp8 - exact).norm() / exact.norm()
    print(f"FP8 feed-forward relative error {error.item():.4f}")
    assert 0 < error < 0.1
    assert block.ff.net[2].weight.dtype == torch.bfloat16  # the original block is untouched


def _attention_kernel(name: str):
    """The kernel under test as f(q, k, v), or a skip where it cannot run here."""
    from engine.kernels.flash_attention3 import fa3_attention, fa3_available
    from engine.kernels.triton_attention import attention_forward, triton_available

    cuda = torch.device("cuda")
    if name == "fa3":
        if not fa3_available(cuda):
            pytest.skip("needs flash_attn_3 (scripts/build_flash_attention3.sh) on a Hopper GPU")
        return fa3_attention
    if not triton_available(cuda):
        pytest.skip("needs triton")
    if name == "triton-tma" and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA loader needs Hopper or later")
    return lambda q, k, v: attention_forward(q, k, v, tma=name == "triton-tma")


@pytest.mark.parametrize("kernel", ["triton-tma", "triton-pointers", "fa3"])
@pytest.mark.parametrize("rows, key_factor, seq", [(1, 1, 4000), (3, 2, 2333)])
def test_each_attention_kernel_is_sdpa_up_to_float_rounding(rows, key_factor, seq, kernel):
    attend = _attention_kernel(kernel)
    g = torch.Generator("cuda").manual_seed(0)
    query = torch.randn(rows, seq, 48, 64, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)
    key, value = (torch.randn(rows, 48, key_factor * seq, 64, device="cuda", dtype=torch.bfloat16, generator=g)
                  for _ in range(2))
    exact = torch.nn.functional.scaled_dot_product_attention(query.float(), key.float(), value.float())
    ours = attend(query, key, value)
    assert ours.shape == query.shape and ours.transpose(1, 2).is_contiguous()  # [B, Sq, H, d] in memory
    assert (ours.float() - exact).abs().max() < 1e-2  # bf16 output rounding, not another function
