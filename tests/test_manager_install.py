"""ComfyUI-Manager installs the pack: ``scripts/manager_install.sh`` against the real ComfyUI.

The script pip-installs comfyui-manager into a hard-linked copy of the venv ComfyUI runs from
(Manager installs a pack's requirements with its own interpreter), and then, without network
where the machine allows: ``cm-cli install`` of the committed HEAD from a bare clone by
``file://localhost/...`` URL, ComfyUI on that base directory lists every node of node_list.json,
``cm-cli fix`` and ``cm-cli reinstall`` by name each restore a removed requirement, and no file of
the original venv was written. On ComfyUI 0.33.0 (with the Manager its manager_requirements.txt
pins) it also takes the route of a UI user: ComfyUI ``--enable-manager``, Manager's task queue
uninstalls and installs the pack from the URL, and the restarted server lists every node. The
script exits non-zero on any failed check and writes ``result.json``. About 2.5 minutes per
version on 2 cores; needs the package index once (pip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.comfy_harness import COMFY_VERSIONS, REPO, comfyui_dir, comfyui_python, find_comfyui_main

pytestmark = pytest.mark.scripts

SCRIPT = REPO / "scripts" / "manager_install.sh"
WORK = REPO / ".cache" / "manager-install"  # the script's default: same filesystem as the venv
STEPS = ["venv", "layout", "install", "server", "fix", "reinstall", "isolation"]
WORK_033 = REPO / ".cache" / "manager-install-0.33.0"
STEPS_033 = ["venv", "layout", "install", "fix", "reinstall", "route", "isolation"]


def run_script(timeout: float, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COMFYUI_DIR": str(comfyui_dir()), **env}
    if sys.prefix != sys.base_prefix and "VENV" not in env:  # the venv running the tests is the one to copy
        environment["VENV"] = sys.prefix
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout
    )


def test_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    work = tmp_path / "someone-elses"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    done = run_script(timeout=60, MANAGER_INSTALL_DIR=str(work))
    assert done.returncode != 0
    assert "was not made by this script" in done.stderr
    assert (work / "keep.txt").read_text() == "mine"


#: Stands in for a venv's Python: ``-c`` prints its prefix (the folder above bin/, every link resolved), as
#: ``os.path.realpath(sys.prefix)`` does; ``pip list`` lists one package; anything else (``pip install``) fails.
FAKE_PYTHON = """#!/bin/sh
case "$*" in
  -c*) cd "$(dirname "$0")/.." && pwd -P ;;
  *" list "*) echo "pip==24.0" ;;
  *) exit 1 ;;
esac
"""


def test_a_venv_reached_through_a_link_is_copied_from_the_folder_it_names(tmp_path):
    real = tmp_path / "shared-venv"
    (real / "bin").mkdir(parents=True)
    (real / "bin" / "python").write_text(FAKE_PYTHON)
    (real / "bin" / "python").chmod(0o755)
    link = tmp_path / "worktree-venv"
    link.symlink_to(real, target_is_directory=True)
    work = tmp_path / "work"
    done = run_script(timeout=60, VENV=str(link), MANAGER_INSTALL_DIR=str(work), MANAGER_INSTALL_KEEP="1")
    # The copy is made and checked; the stand-in Python then stops the run at the pip install into it.
    assert done.returncode == 1 and "FAILED at step 'venv': pip install comfyui-manager" in done.stderr, done.stderr
    assert f"VENV={link} is reached through a link; copying {real}" in done.stdout
    copy = work / "venv"
    assert copy.is_dir() and not copy.is_symlink()
    assert (copy / "bin" / "python").samefile(real / "bin" / "python")  # hard-linked from the linked folder
    assert sorted(p.name for p in real.rglob("*")) == ["bin", "python"]  # nothing written into it


def test_manager_installs_fixes_and_reinstalls_the_pack():
    find_comfyui_main()  # a clear error if ComfyUI is not installed
    done = run_script(
        timeout=1500,
        MANAGER_INSTALL_DIR=str(WORK),
        MANAGER_INSTALL_SOURCE=str(REPO),
        MANAGER_VERSION="4.3",
        MANAGER_INSTALL_SERVER_TWICE="0",  # the reinstall is checked file by file: one server start is enough
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"scripts/manager_install.sh failed:\n{output[-8000:]}"

    result = json.loads((WORK / "result.json").read_text())
    assert result["ok"] and result["failed_step"] is None, result
    assert [step["name"] for step in result["steps"]] == STEPS
    assert result["manager_version"] == "4.3"
    print(f"network isolation: {result['network_isolation']}; total {result['total_seconds']} s")
    for step in result["steps"]:
        print(f"  {step['name']:<20} {step['seconds']:6.1f} s  {step['detail']}")

    # ComfyUI listed every node of the installed pack's node_list.json.
    pack = WORK / "base" / "custom_nodes" / "ComfyUI-VEA"
    nodes = json.loads((pack / "node_list.json").read_text())
    assert output.count(f"{len(nodes)}/{len(nodes)} nodes of node_list.json in /object_info") == 1, output[-4000:]
    # Manager itself installed the removed requirement each time, into the venv copy.
    for name in ("install", "fix", "reinstall"):
        log = (WORK / "logs" / f"{name}.log").read_text()
        assert "Successfully installed num2words-" in log, log[-2000:]
        assert f"{WORK / 'venv'}/bin/python', '-m', 'pip', 'install'" in log, log[-2000:]
    assert (pack / "__init__.py").is_file() and (pack / "nodes" / "__init__.py").is_file()
    assert not (WORK / "venv").exists(), "the venv copy should be removed after the run"


@pytest.mark.skipif(
    "0.33.0" not in COMFY_VERSIONS, reason="ComfyUI 0.33.0 is not installed (scripts/install_comfyui.sh)"
)
def test_manager_on_comfyui_0_33_by_cli_and_by_its_server_route():
    comfy = comfyui_dir("0.33.0")
    pinned = (comfy / "manager_requirements.txt").read_text().split("==")[1].split()[0]
    done = run_script(
        timeout=1500,
        MANAGER_COMFYUI="0.33.0",
        COMFYUI_DIR=str(comfy),
        VENV=str(comfyui_python("0.33.0").parents[1]),  # 0.33.0's own venv: Manager installs into the copy of it
        MANAGER_INSTALL_DIR=str(WORK_033),
        MANAGER_INSTALL_SOURCE=str(REPO),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"MANAGER_COMFYUI=0.33.0 scripts/manager_install.sh failed:\n{output[-8000:]}"

    result = json.loads((WORK_033 / "result.json").read_text())
    assert result["ok"] and result["comfyui_version"] == "0.33.0" and result["manager_version"] == pinned, result
    assert [step["name"] for step in result["steps"]] == STEPS_033
    for step in result["steps"]:
        print(f"  {step['name']:<20} {step['seconds']:6.1f} s  {step['detail']}")

    pack = WORK_033 / "base" / "custom_nodes" / "ComfyUI-VEA"
    nodes = json.loads((pack / "node_list.json").read_text())
    listed = f"{len(nodes)}/{len(nodes)} nodes of node_list.json in /object_info"
    assert output.count(listed) == 2, output[-4000:]  # after cm-cli reinstall, and after the route install
    route = (WORK_033 / "logs" / "route.log").read_text()
    assert "Manager route install: ComfyUI up in" in route and route.count(listed) == 2, route[-3000:]
    server_log = (WORK_033 / "logs" / "route-server-1.log").read_text()
    assert "ComfyUI-Manager" in server_log, server_log[-3000:]
    # Manager cloned the URL its channel-list entry names (the bare clone, found without .git); the log wraps lines
    assert f"gitclone'file://localhost{WORK_033}/ComfyUI-VEA'" in "".join(server_log.split()), server_log[-3000:]
    assert "+ num2words==" in server_log or "Successfully installed num2words-" in server_log, server_log[-3000:]
    for name in ("install", "fix", "reinstall"):
        log = (WORK_033 / "logs" / f"{name}.log").read_text()
        assert "Successfully installed num2words-" in log, log[-2000:]
    assert not (WORK_033 / "venv").exists(), "the venv copy should be removed after the run"
