#!/usr/bin/env bash
# The prepared GPU check (see bench/gpu_check.py for what it prints), at most 8 minutes.
#   bash bench/gpu_check.sh             # on a machine with a CUDA GPU
#   bash bench/gpu_check.sh --dry-run   # anywhere: meta-device shapes and the plan, < 60 s on a CPU
# Other arguments go to bench/gpu_check.py (e.g. --skip comfyui).
# Python: $VEA_PYTHON if set, else the repository's .venv, else python3; the first that imports torch
# (and, for a real run, sees a CUDA GPU) is used. What was found is printed first.
set -u
cd "$(dirname "$0")/.." || exit 2

DRY=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && DRY=1; done

probe() {  # prints "torch <version> cuda <True|False>" or nothing
  "$1" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>/dev/null
}

PY=""
echo "[gpu_check] looking for a Python with torch$([ $DRY = 0 ] && echo ' and CUDA'):"
for candidate in ${VEA_PYTHON:-} .venv/bin/python python3; do
  if ! command -v "$candidate" >/dev/null 2>&1 && [ ! -x "$candidate" ]; then
    echo "[gpu_check]   $candidate: not found"
    continue
  fi
  found="$(probe "$candidate")"
  if [ -z "$found" ]; then
    echo "[gpu_check]   $candidate: no torch"
    continue
  fi
  echo "[gpu_check]   $candidate: $found"
  if [ -z "$PY" ] && { [ $DRY = 1 ] || [ "${found##* }" = "True" ]; }; then
    PY="$candidate"
  fi
done
if [ -z "$PY" ]; then
  if [ $DRY = 1 ]; then
    echo "[gpu_check] no Python with torch: run scripts/setup.sh (creates .venv) or set VEA_PYTHON." >&2
  else
    echo "[gpu_check] no Python whose torch sees a CUDA GPU: run this on a GPU machine (with torch built for CUDA," \
         "transformers and accelerate), set VEA_PYTHON to it, or use --dry-run here." >&2
  fi
  exit 3
fi
echo "[gpu_check] using $PY"
if [ $DRY = 1 ]; then LIMIT=120; else LIMIT=480; fi
PYTHONUNBUFFERED=1 exec timeout --signal=INT --kill-after=15 "$LIMIT" "$PY" bench/gpu_check.py "$@"
