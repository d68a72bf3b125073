"""The shared ComfyUI servers themselves (``tests/conftest.py``): the versions under test are installed and each
server runs the version asked for; a pack that fails to load beside ours is reported, so the checks that
ours loaded cleanly can fail; every tiny checkpoint of the session is served and runs the shipped
``vea_compare`` workflow.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.comfy_harness import (
    BROKEN_PACK_NAME,
    COMFY_INSTALLS,
    COMFY_VERSIONS,
    REPO,
    ComfyServer,
    comfyui_dir,
    comfyui_python,
    execution_error,
)

pytestmark = pytest.mark.comfy


def test_versions_are_installed_and_distinct():
    assert COMFY_VERSIONS[0] == "0.3.75" and list(COMFY_VERSIONS) == [v for v in COMFY_INSTALLS if v in COMFY_VERSIONS]
    if os.environ.get("CI"):  # CI installs every version (scripts/setup.sh --dev)
        assert COMFY_VERSIONS == tuple(COMFY_INSTALLS)
    for version in COMFY_VERSIONS:
        source = (comfyui_dir(version) / "comfyui_version.py").read_text()
        assert f'__version__ = "{version}"' in source, version
    assert ComfyServer(version=None).main_py == ComfyServer(version="0.3.75").main_py
    with pytest.raises(ValueError, match="0.9.9"):
        ComfyServer(version="0.9.9")


def test_server_runs_the_version_asked_for(server, request):
    version = request.node.callspec.params["server"]
    assert server.version == version
    assert f"ComfyUI version: {version}" in server.log_text()
    assert Path(server.python) == comfyui_python(version)
    # Both run the project's torch; 0.33.0 (which imports torchaudio at start-up) with the real torchaudio.
    probe = "import torch, importlib.util as u; print(torch.__version__, u.find_spec('torchaudio') is not None)"
    done = subprocess.run([server.python, "-c", probe], capture_output=True, text=True, timeout=120)
    torch_version, has_torchaudio = done.stdout.split()
    assert torch_version.split("+")[0] == importlib.metadata.version("torch").split("+")[0]
    if version == "0.33.0":
        assert has_torchaudio == "True"
        resample = (
            "import importlib.metadata as m, torch, torchaudio.functional as F; "
            "print(m.version('torchaudio'), tuple(F.resample(torch.ones(1, 160), 16000, 8000).shape))"
        )
        done = subprocess.run([server.python, "-c", resample], capture_output=True, text=True, timeout=120)
        assert done.stdout.split()[0].startswith("2.11.") and done.stdout.split(maxsplit=1)[1].strip() == "(1, 80)", (
            done.stdout + done.stderr[-2000:]
        )


def test_a_pack_that_fails_to_load_is_reported_and_ours_loads_beside_it(server):
    errors = server.pack_load_errors(BROKEN_PACK_NAME)
    assert any("Input ids must be unique" in line for line in errors), errors
    assert any("IMPORT FAILED" in line for line in errors), errors
    assert server.pack_load_errors() == []
    info = server.object_info()
    assert "VEABrokenProbe" not in info and "VEALoadVLM" in info
    # a node type the server does not know: 0.3.75 calls it "invalid_prompt", 0.33.0 "missing_node_type"
    answer = server.queue({"1": {"class_type": "VEABrokenProbe", "inputs": {"value": 1}}})
    assert answer["http_status"] == 400 and answer["error"]["type"] in ("invalid_prompt", "missing_node_type")
    assert "VEABrokenProbe" in json.dumps(answer["error"])


def test_every_tiny_checkpoint_runs_the_compare_workflow(server, tiny_model_dirs):
    """The shipped ``vea_compare`` prompt once per family of the session, all in one prompt: two answers and an
    evidence map each (every family end to end through the nodes; the engine's matrices check the numbers)."""
    shipped = json.loads((REPO / "workflows" / "api" / "vea_compare.json").read_text())
    prompt, answers, evidence = {}, {}, {}

    def renamed(i: int, key: str) -> str:  # the family's own copy of node ``key``
        return str(100 * (i + 1) + int(key))

    for i, family in enumerate(tiny_model_dirs):
        for key, node in shipped.items():
            node = json.loads(json.dumps(node))
            for name, value in node["inputs"].items():
                if isinstance(value, list) and len(value) == 2 and value[0] in shipped:
                    node["inputs"][name] = [renamed(i, value[0]), value[1]]
            if node["class_type"] == "VEALoadVLM":
                node["inputs"].update(
                    checkpoint=f"{family}-tiny", dtype="float32", attention="sdpa", resolution="checkpoint"
                )
            if node["class_type"] == "VEAAllInOne":
                node["inputs"].update(max_new_tokens=2, layers="deepest_half")  # attention layers on any decoder
            if node["class_type"] == "PreviewAny":
                answers.setdefault(family, []).append(renamed(i, key))
            if node["class_type"] == "PreviewImage":
                evidence[family] = renamed(i, key)
            prompt[renamed(i, key)] = node
    queued = server.queue(prompt)
    assert queued["http_status"] == 200 and queued["node_errors"] == {}, queued
    entry = server.wait(queued["prompt_id"], timeout=600)
    assert entry["status"]["status_str"] == "success", execution_error(entry) or server.log_tail()
    log = server.log_text()
    for family, nodes in answers.items():
        assert re.search(rf"loaded \S*/{re.escape(family)}-tiny \({re.escape(family)}, \d+ decoder layers", log), family
        texts = [entry["outputs"][node]["text"] for node in nodes]
        assert len(texts) == 2 and all(len(t) == 1 and isinstance(t[0], str) for t in texts), (family, texts)
        shown = entry["outputs"][evidence[family]]["images"][0]
        data = server.view(shown["filename"], shown.get("subfolder", ""), shown.get("type", "output"))
        mask = np.asarray(Image.open(io.BytesIO(data)).convert("L"))  # [H, W]
        assert mask.min() == 0 and mask.max() == 255, family  # a real evidence map, min-max normalised
