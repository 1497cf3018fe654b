"""GPU kernels installed on a loaded model: their selection, Triton and FlashAttention-3 attention,
FP8 projections, the fused GELU."""
