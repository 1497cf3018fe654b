"""Key/value injection: plain attention is CogVideoX's own; injected attention does what it claims."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0

from engine.pipeline.attention import InjectionPlan
from engine.pipeline.model import rotary_embeddings


def _inputs(model, batch, seed=0):
    g = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn((1, 3, 16, 8, 12), generator=g).repeat(batch, 1, 1, 1, 1)
    text = torch.randn((1, 226, 32), generator=g).repeat(batch, 1, 1)
    return latents, text


def _forward(model, latents, text, plan=None):
    transformer = model.pipeline.transformer
    with torch.no_grad(), model.injection.active(plan):
        return transformer(hidden_states=latents, encoder_hidden_states=text,
                           timestep=torch.full((latents.size(0),), 500), return_dict=False,
                           image_rotary_emb=rotary_embeddings(model, latents))[0]


def test_without_a_plan_the_processor_is_cogvideox_attention(tiny_model):
    latents, text = _inputs(tiny_model, 2)
    latents[1] += 0.5
    ours = _forward(tiny_model, latents, text)
    blocks = tiny_model.pipeline.transformer.transformer_blocks
    processors = [b.attn1.processor for b in blocks]
    try:
        for b in blocks:
            b.attn1.set_processor(CogVideoXAttnProcessor2_0())
        theirs = _forward(tiny_model, latents, text)
    finally:
        for b, p in zip(blocks, processors, strict=False):
            b.attn1.set_processor(p)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_injecting_a_row_into_itself_changes_nothing(tiny_model):
    """Attending to [own keys, the same keys again] is the same softmax: the edited row's output must
    equal plain attention's. Wrong RoPE on the reference keys, or the wrong reference, breaks this."""
    latents, text = _inputs(tiny_model, 1)
    other = latents + 0.7
    plain = _forward(tiny_model, latents, text)
    batch = torch.cat([latents, other, latents])  # edited rows 0, 1; reference row 2 (= row 0)
    injected = _forward(tiny_model, batch, text.repeat(3, 1, 1), InjectionPlan(2, (0, 0)))
    torch.testing.assert_close(injected[0:1], plain, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(injected[2:3], plain, rtol=1e-4, atol=1e-4)  # references attend to themselves
    other_plain = _forward(tiny_model, other, text)
    assert not torch.allclose(injected[1:2], other_plain, atol=1e-4)  # a different reference does matter



def test_blocks_with_the_fused_gelu_compute_the_same_and_share_the_weights(tiny_model):
    """The compiled path's feed-forward (projection + tanh GELU as one op) is diffusers' function on the
    same parameters; the model's own blocks are left as they were."""
    from diffusers.models.activations import GELU

    from engine.kernels.fused_gelu import FusedGELUProjection, with_fused_gelu

    transformer = tiny_model.pipeline.transformer
    plain_blocks = transformer.transformer_blocks
    fused = torch.nn.ModuleList(with_fused_gelu(b) for b in plain_blocks)
    assert all(isinstance(b.ff.net[0], FusedGELUProjection) for b in fused)
    assert all(isinstance(b.ff.net[0], GELU) for b in plain_blocks)  # originals untouched
    assert {id(p) for p in fused.parameters()} == {id(p) for p in plain_blocks.parameters()}
    latents, text = _inputs(tiny_model, 2)
    plain = _forward(tiny_model, latents, text)
    try:
        transformer.transformer_blocks = fused
        fast = _forward(tiny_model, latents, text, InjectionPlan(1, (0,)))
        transformer.transformer_blocks = plain_blocks
        plain_injected = _forward(tiny_model, latents, text, InjectionPlan(1, (0,)))
        transformer.transformer_blocks = fused
        fast_plain = _forward(tiny_model, latents, text)
    finally:
        transformer.transformer_blocks = plain_blocks
    torch.testing.assert_close(fast_plain, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, plain_injected, rtol=1e-5, atol=1e-5)


def test_the_fp8_copy_of_a_block_has_its_own_weights_but_the_shared_state_and_kernel(tiny_model):
    """engine.kernels.fp8 quantizes copies of the blocks: each must still read the injection state every block
    shares, and copying must not trip over the kernel in it (a custom op, which deepcopy cannot copy:
    --fp8 beside FlashAttention-3 failed so on an H100)."""
    from engine.kernels.flash_attention3 import fa3_attention
    from engine.kernels.fp8 import copy_block

    block = tiny_model.pipeline.transformer.transformer_blocks[0]
    saved = tiny_model.injection.attend
    try:
        tiny_model.injection.attend = fa3_attention
        copied = copy_block(block)
    finally:
        tiny_model.injection.attend = saved
    assert copied.attn1.processor is block.attn1.processor
    original, copy_weight = block.ff.net[2].weight, copied.ff.net[2].weight
    assert copy_weight is not original and copy_weight.data_ptr() != original.data_ptr()
    assert torch.equal(copy_weight, original)


def test_the_chosen_attention_kernel_runs_in_every_block_and_triton_or_fa3_need_a_gpu(tiny_model):
    """engine.kernels.select swaps the kernel through the shared state: every block's attention (both calls of
    an injected one) goes through it. Where Triton or FlashAttention-3 cannot run, asking for it says
    so and how to get it."""
    import pytest

    from engine.errors import ModelError
    from engine.kernels.select import resolve_attention

    calls = []

    def counting_sdpa(query, key, value):
        calls.append(key.size(2))
        return torch.nn.functional.scaled_dot_product_attention(query, key, value)

    latents, text = _inputs(tiny_model, 3)
    state = tiny_model.injection
    try:
        state.attend = counting_sdpa
        _forward(tiny_model, latents, text, InjectionPlan(2, (0, 0)))
    finally:
        state.attend = torch.nn.functional.scaled_dot_product_attention
    blocks = len(tiny_model.pipeline.transformer.transformer_blocks)
    tokens = 226 + 3 * 4 * 6  # text + latent frames x (8/2) x (12/2) patches
    assert sorted(calls) == [tokens] * blocks + [2 * tokens] * blocks  # references, then edited rows
    assert resolve_attention("auto", torch.device("cpu")) == "default"
    with pytest.raises(ModelError, match="triton attention needs a CUDA GPU"):
        resolve_attention("triton", torch.device("cpu"))
    with pytest.raises(ModelError, match="fa3 attention needs a Hopper GPU.*build_flash_attention3.sh"):
        resolve_attention("fa3", torch.device("cpu"))


_TRITON_CHECK = """
import torch, torch.nn.functional as F
import engine.kernels.triton_attention as kernel
for tuned in (kernel._forward_tma, kernel._forward_pointers):
    tuned.configs = tuned.configs[:1]  # the interpreter cannot time the autotuner's candidates
g = torch.Generator().manual_seed(0)
worst = 0.0
for rows, seq_q, seq_k, strided in ((1, 150, 150, False), (2, 100, 230, False), (1, 64, 128, False),
                                    (1, 130, 130, True)):
    if strided:  # [B, S, H, d] memory seen as [B, H, S, d], as the processor passes it
        q, k, v = (torch.randn(rows, n, 3, 64, generator=g).transpose(1, 2) for n in (seq_q, seq_k, seq_k))
    else:
        q, k, v = (torch.randn(rows, 3, n, 64, generator=g) for n in (seq_q, seq_k, seq_k))
    for tma in (True, False):
        out = kernel.attention_forward(q, k, v, tma=tma)
        assert out.shape == q.shape and out.transpose(1, 2).is_contiguous()  # [B, Sq, H, d] in memory
        worst = max(worst, (out - F.scaled_dot_product_attention(q, k, v)).abs().max().item())
print(worst)
"""


def test_the_triton_attention_kernel_is_sdpa_in_tritons_interpreter():
    """The GPU's default attention kernel, both its loaders (TMA tiles and pointers), run on the CPU by
    Triton's interpreter: full and partial key blocks, fewer queries than a block, and the strided
    layout the processor passes."""
    import os
    import subprocess
    import sys

    import pytest

    pytest.importorskip("triton")
    env = os.environ | {"TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", _TRITON_CHECK], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5
