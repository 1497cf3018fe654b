#!/usr/bin/env bash
# One entry point for a fresh clone. It creates .venv, installs torch (the pinned CPU build unless a
# GPU torch is wanted) and this package, then runs what you asked for:
#   ./dev.sh demo          the demo: tiny offline model, generated clip, two prompt variants
#   ./dev.sh test [ARGS]   the test suite (pytest ARGS)
#   ./dev.sh run [ARGS]    cogedit-tui ARGS inside the environment
# Environment: PYTHON (interpreter, default python3), COGEDIT_TORCH=cpu|cuda (default: cuda when
# nvidia-smi is present, else cpu), COGEDIT_VENV (default .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON=${PYTHON:-python3}
VENV=${COGEDIT_VENV:-.venv}
TORCH_CPU_VERSION=2.13.0

if [ -z "${COGEDIT_TORCH:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then COGEDIT_TORCH=cuda; else COGEDIT_TORCH=cpu; fi
fi

# The torch bound is pyproject.toml's (one home): its "torch..." dependency line.
torch_requirement() { sed -n 's/^ *"\(torch[<>=,0-9.]*\)".*/\1/p' pyproject.toml | head -n 1; }

say() { printf '\033[1m[dev.sh]\033[0m %s\n' "$*" >&2; }

setup() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    { say "Python 3.10 or newer is needed (found $("$PYTHON" --version 2>&1)); set PYTHON=..."; exit 2; }
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local py="$VENV/bin/python" stamp="$VENV/.cogedit-setup"
  local want
  want="$(cat pyproject.toml | sha256sum | cut -c1-16)-$COGEDIT_TORCH"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  "$py" -m pip install -q --upgrade pip
  if ! "$py" -c 'import torch' >/dev/null 2>&1; then
    if [ "$COGEDIT_TORCH" = cuda ]; then
      say "installing a CUDA build of torch"
      "$py" -m pip install -q "$(torch_requirement)"
    else
      # Pin the CPU build first, so nothing later pulls gigabytes of CUDA packages. A local wheel
      # (pip's find-links) is used when there is one; else PyTorch's CPU index; else PyPI.
      say "installing torch==$TORCH_CPU_VERSION (CPU)"
      "$py" -m pip install -q --no-index --no-deps "torch==$TORCH_CPU_VERSION" 2>/dev/null ||
        "$py" -m pip install -q --timeout 30 --retries 1 --index-url https://download.pytorch.org/whl/cpu \
          "torch==$TORCH_CPU_VERSION" 2>/dev/null ||
        "$py" -m pip install -q "torch==$TORCH_CPU_VERSION"
      "$py" -m pip install -q "torch==$TORCH_CPU_VERSION"  # its own dependencies
    fi
  fi
  # The ray extra too: the --cluster tests run a local Ray cluster (ray does not depend on torch, so the
  # torch installed above stays).
  say "installing cogedit-tui, its test tools and Ray"
  "$py" -m pip install -q -e ".[test,ray]"
  echo "$want" >"$stamp"
}

command=${1:-demo}
shift || true
setup
export PATH="$PWD/$VENV/bin:$PATH"
case "$command" in
  demo)
    if [ -t 0 ] && [ -t 1 ]; then exec cogedit-tui demo "$@"; fi
    say "no terminal attached: running the demo headless"
    exec cogedit-tui demo --headless "$@" ;;
  test) exec python -m pytest "$@" ;;
  run) exec cogedit-tui "$@" ;;
  *) say "unknown command '$command' (demo, test, run)"; exit 2 ;;
esac
