"""Flash attention's forward pass written in Triton, for the engine's attention on a GPU.

CogVideoX's heads are 64 wide, where attention kernels run furthest below the tensor cores' peak.
On the lent H100 this kernel measured faster than cuDNN's (the fastest SDPA backend there) on the
engine's shapes (BENCHMARKS.md). Same arithmetic as SDPA: softmax(Q K^T / sqrt(d)) V with an online
softmax in float32, so results differ from SDPA's only by float rounding.

Two loaders of the same loop: on Hopper and later, the tensor-memory accelerator copies each tile
(:func:`_forward_tma`, Triton's tensor descriptors: no address arithmetic or masks in the loop, out-of-
range rows read as zeros); elsewhere, or where a stride does not suit it, plain pointer loads with
masks (:func:`_forward_pointers`).

:func:`flash_attention` is a custom op (opaque to ``torch.compile``): Q [B, H, Sq, d] against K, V
[B, H, Sk, d], any strides with a contiguous last dimension; the output is [B, H, Sq, d] laid out as
[B, Sq, H, d] (as SDPA's fused kernels return it), so merging the heads after it is a view, not a copy.
Triton is optional: it ships with PyTorch's CUDA wheels; without it (or without a GPU) the engine
uses SDPA.
"""

from __future__ import annotations

import contextlib
import threading

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU wheels of torch come without Triton
    triton = None
try:
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # older Triton: the pointer loader only
    TensorDescriptor = None

LOG2_E = 1.4426950408889634
# Triton's autotuner keeps the arguments of the call under way on itself (and tunes on first use):
# with one worker thread per GPU, launches take turns. A launch only queues work, so the turn is short.
_LAUNCH_LOCK = threading.Lock()


def triton_available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


if triton is not None:
    # (BLOCK_M queries, BLOCK_N keys, warps, stages: tiles in flight): the configuration that won on
    # the H100 and its close rival.
    _BLOCKS = ((128, 64, 8, 4), (128, 64, 8, 3))

    def _describe_tiles(nargs: dict) -> None:
        """Autotuner pre-hook: the tensor descriptors' tiles for the configuration about to run."""
        for name, rows in (("q_desc", "BLOCK_M"), ("o_desc", "BLOCK_M"), ("k_desc", "BLOCK_N"), ("v_desc", "BLOCK_N")):
            nargs[name].block_shape = [1, 1, nargs[rows], nargs["HEAD_DIM"]]

    def _configs(pre_hook=None) -> list:
        return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s, pre_hook=pre_hook)
                for m, n, w, s in _BLOCKS]

    @triton.jit
    def _softmax_update(scores, v, m_i, l_i, acc, qk_scale):
        """Fold one block of raw scores [M, N] (-inf where masked) and its values [N, d] into the running
        max ``m_i`` and sum ``l_i`` (log2 units) and the unnormalized output ``acc`` [M, d]."""
        # The max of the raw scores (the scale is positive), so that scaling and subtracting is one FMA.
        m_new = tl.maximum(m_i, tl.max(scores, 1) * qk_scale)
        p = tl.math.exp2(scores * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        return m_new, l_i, acc

    @triton.autotune(configs=_configs(_describe_tiles), key=["SEQ_Q", "SEQ_K", "HEAD_DIM"])
    @triton.jit
    def _forward_tma(q_desc, k_desc, v_desc, o_desc, qk_scale, H, SEQ_Q, SEQ_K, HEAD_DIM: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        """One program: BLOCK_M queries of one (batch, head) against all keys, tiles copied by the TMA."""
        start_m = tl.program_id(0) * BLOCK_M
        b, h = tl.program_id(1) // H, tl.program_id(1) % H
        q = q_desc.load([b, h, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        full = (SEQ_K // BLOCK_N) * BLOCK_N
        for start_n in range(0, full, BLOCK_N):
            k = k_desc.load([b, h, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
            v = v_desc.load([b, h, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
            m_i, l_i, acc = _softmax_update(tl.dot(q, k.T), v, m_i, l_i, acc, qk_scale)
        if full < SEQ_K:  # the last, partial block: keys past the end read as zeros; mask their scores
            k = k_desc.load([b, h, full, 0]).reshape(BLOCK_N, HEAD_DIM)
            v = v_desc.load([b, h, full, 0]).reshape(BLOCK_N, HEAD_DIM)
            live = full + tl.arange(0, BLOCK_N) < SEQ_K
            scores = tl.where(live[None, :], tl.dot(q, k.T), float("-inf"))
            m_i, l_i, acc = _softmax_update(scores, v, m_i, l_i, acc, qk_scale)
        out = (acc / l_i[:, None]).to(o_desc.dtype)
        o_desc.store([b, h, start_m, 0], out.reshape(1, 1, BLOCK_M, HEAD_DIM))  # rows past the end are dropped

    @triton.autotune(configs=_configs(), key=["SEQ_Q", "SEQ_K", "HEAD_DIM"])
    @triton.jit
    def _forward_pointers(Q, K, V, O, qk_scale, sqb, sqh, sqs, skb, skh, sks, svb, svh, svs, sob, soh, sos,  # noqa: E741
                          H, SEQ_Q, SEQ_K, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        """One program: BLOCK_M queries of one (batch, head) against all keys, loaded through pointers."""
        b, h = tl.program_id(1) // H, tl.program_id(1) % H
        k_base, v_base = K + b * skb + h * skh, V + b * svb + h * svh
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        offs_n = tl.arange(0, BLOCK_N)
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqs + offs_d[None, :], mask=offs_m[:, None] < SEQ_Q,
                    other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        full = (SEQ_K // BLOCK_N) * BLOCK_N
        for start_n in range(0, full, BLOCK_N):
            keys = start_n + offs_n
            k = tl.load(k_base + keys[None, :] * sks + offs_d[:, None])  # [d, N]
            v = tl.load(v_base + keys[:, None] * svs + offs_d[None, :])
            m_i, l_i, acc = _softmax_update(tl.dot(q, k), v, m_i, l_i, acc, qk_scale)
        if full < SEQ_K:  # the last, partial block
            keys = full + offs_n
            live = keys < SEQ_K
            k = tl.load(k_base + keys[None, :] * sks + offs_d[:, None], mask=live[None, :], other=0.0)
            v = tl.load(v_base + keys[:, None] * svs + offs_d[None, :], mask=live[:, None], other=0.0)
            scores = tl.where(live[None, :], tl.dot(q, k), float("-inf"))
            m_i, l_i, acc = _softmax_update(scores, v, m_i, l_i, acc, qk_scale)
        out = acc / l_i[:, None]
        tl.store(O + b * sob + h * soh + offs_m[:, None] * sos + offs_d[None, :], out.to(O.dtype.element_ty),
                 mask=offs_m[:, None] < SEQ_Q)


def _tma_suits(*tensors: torch.Tensor) -> bool:
    """Tensor descriptors need 16-byte aligned addresses and strides; the GPU needs Hopper or later."""
    if TensorDescriptor is None or not tensors[0].is_cuda:
        return False
    if torch.cuda.get_device_capability(tensors[0].device)[0] < 9:
        return False
    return all(t.data_ptr() % 16 == 0 and all(s * t.element_size() % 16 == 0 for s in t.stride()[:-1])
               for t in tensors)


def attention_forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *,
                      tma: bool | None = None) -> torch.Tensor:
    """The kernel behind :func:`flash_attention`; ``tma`` picks the loader (None: the TMA where it suits)."""
    if triton is None:
        raise RuntimeError("the Triton attention needs triton (it ships with PyTorch's CUDA wheels)")
    query, key, value = (x if x.stride(-1) == 1 else x.contiguous() for x in (query, key, value))
    batch, heads, seq_q, head_dim = query.shape
    out = query.new_empty(batch, seq_q, heads, head_dim).transpose(1, 2)  # [B, H, Sq, d] as [B, Sq, H, d]
    tma = _tma_suits(query, key, value, out) if tma is None else tma
    qk_scale = head_dim**-0.5 * LOG2_E

    def grid(meta):
        return triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads

    # Triton launches on the current device: make it the tensors' (each GPU's worker is its own thread).
    on_device = torch.cuda.device(query.device) if query.is_cuda else contextlib.nullcontext()  # CPU: interpreter
    with _LAUNCH_LOCK, on_device:
        if tma:
            descriptors = [TensorDescriptor(x, list(x.shape), list(x.stride()), [1, 1, 1, head_dim])
                           for x in (query, key, value, out)]  # tiles set per configuration by _describe_tiles
            _forward_tma[grid](*descriptors, qk_scale, heads, seq_q, key.size(2), HEAD_DIM=head_dim)
        else:
            _forward_pointers[grid](query, key, value, out, qk_scale, *query.stride()[:3], *key.stride()[:3],
                                    *value.stride()[:3], *out.stride()[:3], heads, seq_q, key.size(2),
                                    HEAD_DIM=head_dim)
    return out


@torch.library.custom_op("cogedit::flash_attention", mutates_args=())
def flash_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V for Q [B, H, Sq, d], K and V [B, H, Sk, d]; out [B, H, Sq, d] laid out
    as [B, Sq, H, d]."""
    return attention_forward(query, key, value)


@flash_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    batch, heads, seq_q, head_dim = query.shape
    return query.new_empty(batch, seq_q, heads, head_dim).transpose(1, 2)
