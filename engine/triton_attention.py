"""Flash attention's forward pass written in Triton, for the engine's attention on a GPU.

CogVideoX's heads are 64 wide, where attention kernels run furthest below the tensor cores' peak.
On the lent H100 this kernel measured faster than cuDNN's (the fastest SDPA backend there) on the
engine's shapes: one 49-frame layer of a batch-1 row 8.52 vs 9.19 ms, of the four-variant edit's
injected rows 146.0 vs 151.8 ms (BENCHMARKS.md). Same arithmetic as SDPA: softmax(Q K^T / sqrt(d)) V
with an online softmax in float32, so results differ from SDPA's only by float rounding.

:func:`flash_attention` is a custom op (opaque to ``torch.compile``): Q [B, H, Sq, d] against K, V
[B, H, Sk, d], any strides with a contiguous last dimension. Triton is optional: it ships with
PyTorch's CUDA wheels; without it (or without a GPU) the engine uses SDPA.
"""

from __future__ import annotations

import contextlib

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU wheels of torch come without Triton
    triton = None

LOG2_E = 1.4426950408889634


def triton_available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


if triton is not None:
    # The configurations that won on the H100 (BLOCK_M 128, BLOCK_N 64, 8 warps), and close rivals.
    _CONFIGS = [triton.Config({"BLOCK_M": 128, "BLOCK_N": bn}, num_warps=w, num_stages=s)
                for bn, w, s in ((64, 8, 3), (64, 8, 4), (64, 4, 3), (128, 8, 3))]

    @triton.jit
    def _attend_block(q, m_i, l_i, acc, k_base, v_base, start_n, sks, svs, SEQ_K, offs_n, offs_d,
                      qk_scale, MASKED: tl.constexpr):
        """The online-softmax update of BLOCK_M queries by one block of keys (MASKED: the last,
        partial block)."""
        keys = start_n + offs_n
        if MASKED:
            live = keys < SEQ_K
            k = tl.load(k_base + keys[None, :] * sks + offs_d[:, None], mask=live[None, :], other=0.0)  # [d, N]
            scores = tl.where(live[None, :], tl.dot(q, k) * qk_scale, float("-inf"))
            v = tl.load(v_base + keys[:, None] * svs + offs_d[None, :], mask=live[:, None], other=0.0)
        else:
            k = tl.load(k_base + keys[None, :] * sks + offs_d[:, None])  # [d, N]
            scores = tl.dot(q, k) * qk_scale
            v = tl.load(v_base + keys[:, None] * svs + offs_d[None, :])
        m_new = tl.maximum(m_i, tl.max(scores, 1))
        p = tl.math.exp2(scores - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        return m_new, l_i, acc

    @triton.autotune(configs=_CONFIGS, key=["SEQ_Q", "SEQ_K", "HEAD_DIM"])
    @triton.jit
    def _forward(Q, K, V, O, qk_scale, sqb, sqh, sqs, skb, skh, sks, svb, svh, svs, sob, soh, sos,
                 H, SEQ_Q, SEQ_K, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        """One program: BLOCK_M queries of one (batch, head) against all keys, block by block."""
        start_m = tl.program_id(0)
        b, h = tl.program_id(1) // H, tl.program_id(1) % H
        q_base, k_base, v_base = Q + b * sqb + h * sqh, K + b * skb + h * skh, V + b * svb + h * svh
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        offs_n = tl.arange(0, BLOCK_N)
        q = tl.load(q_base + offs_m[:, None] * sqs + offs_d[None, :], mask=offs_m[:, None] < SEQ_Q, other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running max of the scores (log2 units)
        l_i = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp2(score - max)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        full = (SEQ_K // BLOCK_N) * BLOCK_N
        for start_n in range(0, full, BLOCK_N):
            m_i, l_i, acc = _attend_block(q, m_i, l_i, acc, k_base, v_base, start_n, sks, svs, SEQ_K, offs_n,
                                          offs_d, qk_scale, MASKED=False)
        if full < SEQ_K:
            m_i, l_i, acc = _attend_block(q, m_i, l_i, acc, k_base, v_base, full, sks, svs, SEQ_K, offs_n,
                                          offs_d, qk_scale, MASKED=True)
        out = acc / l_i[:, None]
        o_base = O + b * sob + h * soh
        tl.store(o_base + offs_m[:, None] * sos + offs_d[None, :], out.to(O.dtype.element_ty),
                 mask=offs_m[:, None] < SEQ_Q)


@torch.library.custom_op("cogedit::flash_attention", mutates_args=())
def flash_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V for Q [B, H, Sq, d], K and V [B, H, Sk, d]; out like Q."""
    if triton is None:
        raise RuntimeError("the Triton attention needs triton (it ships with PyTorch's CUDA wheels)")
    query, key, value = (x if x.stride(-1) == 1 else x.contiguous() for x in (query, key, value))
    batch, heads, seq_q, head_dim = query.shape
    out = torch.empty_like(query)

    def grid(meta):
        return triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads

    # Triton launches on the current device: make it the tensors' (each GPU's worker is its own thread).
    with torch.cuda.device(query.device) if query.is_cuda else contextlib.nullcontext():  # CPU: the interpreter
        _forward[grid](query, key, value, out, head_dim**-0.5 * LOG2_E,
                       *query.stride()[:3], *key.stride()[:3], *value.stride()[:3], *out.stride()[:3],
                       heads, seq_q, key.size(2), HEAD_DIM=head_dim)
    return out


@flash_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(query)
