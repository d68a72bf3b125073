#!/usr/bin/env bash
# Create .venv with everything VEA needs.   bash scripts/setup.sh [--dev]
#   --dev  also test tools, headless Chromium and the two real ComfyUI versions the node tests run on
#          (0.3.75 in this venv, 0.33.0 in .cache/comfyui/venv-0.33.0: see scripts/install_comfyui.sh;
#          COMFYUI_033=0 skips 0.33.0), and comfy-cli in its own venv .cache/comfy-cli
#          (scripts/install_comfy_cli.sh).
# Environment: VENV (default .venv), PYTHON (default python3),
#   VEA_TORCH / VEA_TORCHVISION: pins for torch/torchvision (a bare "torch" may pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2); }

if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
pip_install "torch==${VEA_TORCH:-2.14.1}" "torchvision==${VEA_TORCHVISION:-0.29.1}"
pip_install -r requirements.txt
pip_install --no-deps -e .
if [ "$DEV" = 1 ]; then
  pip_install -r requirements-dev.txt
  pip_install --no-deps "qa-metrics==0.2.42"
  VENV="$VENV" bash scripts/install_comfyui.sh
  PYTHON="$VENV/bin/python" bash scripts/install_comfy_cli.sh >/dev/null
fi
echo "environment ready: $VENV"
