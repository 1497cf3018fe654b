#!/usr/bin/env bash
# Build FlashAttention-3 (Dao-AILab/flash-attention's hopper/) with only what cogedit-tui runs: the
# forward kernel for head size 64 in bf16 on Hopper (sm_90a); about a minute on 16 cores instead of
# the hours of a full build. Then install it into this Python, where `attention=auto` picks it.
#
#   scripts/build_flash_attention3.sh [CHECKOUT]   build from a checkout (with csrc/cutlass), else clone one
#   FA3_WHEEL_DIR=DIR scripts/build_flash_attention3.sh ...   only build the wheel into DIR
#
# Needs: a CUDA toolkit 12.3+ (nvcc on PATH or in CUDA_HOME), torch 2.9+ with CUDA in this Python.
set -euo pipefail
REV=0251105a2fb19d2957484b7f023cd8c115286ced  # the commit measured in BENCHMARKS.md (2026-08-15)
PYTHON=${PYTHON:-python}
case $PYTHON in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac  # we cd below
src=${1:-}
if [ -z "$src" ]; then
    src=$(mktemp -d)/flash-attention
    git clone --quiet https://github.com/Dao-AILab/flash-attention "$src"
    git -C "$src" checkout --quiet "$REV"
    git -C "$src" submodule update --quiet --init csrc/cutlass
fi
if [ ! -f "$src/hopper/setup.py" ] || [ ! -d "$src/csrc/cutlass/include" ]; then
    echo "error: $src is not a flash-attention checkout with csrc/cutlass: pass one, or no argument to clone it" >&2
    exit 2
fi
if ! command -v nvcc >/dev/null && [ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
    echo "error: nvcc not found: install the CUDA toolkit 12.3+ and put its bin/ on PATH (or set CUDA_HOME)" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' 2>/dev/null; then
    echo "error: $PYTHON has no CUDA build of torch: install one first (COGEDIT_TORCH=cuda ./dev.sh run --help)" >&2
    exit 2
fi
export FLASH_ATTENTION_FORCE_BUILD=TRUE  # build here: no prebuilt wheel exists for this subset
for feature in BACKWARD SPLIT PAGEDKV APPENDKV LOCAL SOFTCAP PACKGQA FP16 FP8 VARLEN CLUSTER \
               HDIM96 HDIM128 HDIM192 HDIM256 SM80 HDIMDIFF64 HDIMDIFF192; do
    export "FLASH_ATTENTION_DISABLE_$feature=TRUE"
done
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
wheels=${FA3_WHEEL_DIR:-$(mktemp -d)}
(cd "$src/hopper" && "$PYTHON" setup.py --quiet bdist_wheel -d "$wheels")
if [ -z "${FA3_WHEEL_DIR:-}" ]; then
    "$PYTHON" -m pip install --no-deps --force-reinstall "$wheels"/flash_attn_3-*.whl
    "$PYTHON" -c 'from flash_attn_interface import flash_attn_func; print("flash_attn_3 installed")'
fi
