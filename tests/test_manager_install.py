"""ComfyUI-Manager installs the pack: ``scripts/manager_install.sh`` against the real ComfyUI.

The script pip-installs comfyui-manager into a hard-linked copy of this venv (Manager installs a
pack's requirements with its own interpreter, the one ComfyUI then runs from), and then, without
network where the machine allows: ``cm-cli install`` of the committed HEAD from a bare clone by
``file://localhost/...`` URL, ComfyUI on that base directory lists every node of node_list.json,
``cm-cli fix`` and ``cm-cli reinstall`` by name each restore a removed requirement, ComfyUI loads
the reinstalled pack, and no file of this venv was written. It exits non-zero on any failed check
and writes ``result.json``. About 2.5 minutes on 2 cores; needs the package index once (pip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.comfy_harness import REPO, comfyui_dir, find_comfyui_main

SCRIPT = REPO / "scripts" / "manager_install.sh"
WORK = REPO / ".cache" / "manager-install"  # the script's default: same filesystem as the venv
STEPS = ["venv", "layout", "install", "server", "fix", "reinstall", "server-reinstalled", "isolation"]


def run_script(timeout: float, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COMFYUI_DIR": str(comfyui_dir()), **env}
    if sys.prefix != sys.base_prefix:  # the venv running the tests is the one to copy
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


@pytest.mark.comfy
def test_manager_installs_fixes_and_reinstalls_the_pack():
    find_comfyui_main()  # a clear error if ComfyUI is not installed
    done = run_script(
        timeout=1500,
        MANAGER_INSTALL_DIR=str(WORK),
        MANAGER_INSTALL_SOURCE=str(REPO),
        MANAGER_VERSION="4.3",
        MANAGER_INSTALL_SERVER_TWICE="1",
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

    # ComfyUI listed every node of the installed pack's node_list.json, after install and after reinstall.
    pack = WORK / "base" / "custom_nodes" / "ComfyUI-VEA"
    nodes = json.loads((pack / "node_list.json").read_text())
    assert output.count(f"{len(nodes)}/{len(nodes)} nodes of node_list.json in /object_info") == 2, output[-4000:]
    # Manager itself installed the removed requirement each time, into the venv copy.
    for name in ("install", "fix", "reinstall"):
        log = (WORK / "logs" / f"{name}.log").read_text()
        assert "Successfully installed num2words-" in log, log[-2000:]
        assert f"{WORK / 'venv'}/bin/python', '-m', 'pip', 'install'" in log, log[-2000:]
    assert (pack / "__init__.py").is_file() and (pack / "nodes" / "__init__.py").is_file()
    assert not (WORK / "venv").exists(), "the venv copy should be removed after the run"
