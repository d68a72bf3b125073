"""The ComfyUI test harness against the real server and front end, with a throwaway V3 stub pack.

The stub pack is written into a temp folder at run time; it has one node, VEAHarnessProbe
(INT -> STRING, output node), that raises on a negative value, refuses 13 in
validate_inputs, and can wait (interruptibly) for ``delay_s`` seconds.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.comfy_harness import (
    COMFY_INSTALLS,
    COMFY_VERSIONS,
    REPO,
    ComfyServer,
    PromptRejected,
    comfy_server_fixture,
    comfyui_dir,
    comfyui_python,
    execution_error,
    status_messages,
)

pytestmark = pytest.mark.comfy

ARTIFACTS = REPO / "artifacts"
PACK_NAME = "VEAHarnessStub"

STUB_PACK = '''\
"""Throwaway V3 pack written by tests/test_comfy_harness.py."""
import time

from comfy_api.latest import ComfyExtension, io
import comfy.model_management


class VEAHarnessProbe(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEAHarnessProbe",
            display_name="VEA Harness Probe",
            category="VEA/testing",
            description="Turns an integer into the text 'probe:<value>'.",
            is_output_node=True,
            inputs=[
                io.Int.Input("value", default=1, min=-100, max=100, tooltip="Any integer; negative raises."),
                io.Float.Input("delay_s", default=0.0, min=0.0, max=60.0, optional=True,
                               tooltip="Seconds to wait (interruptibly) before answering."),
            ],
            outputs=[io.String.Output(display_name="text", tooltip="'probe:<value>'")],
        )

    @classmethod
    def validate_inputs(cls, value):
        if value == 13:
            return "13 is refused by validate_inputs"
        return True

    @classmethod
    def execute(cls, value, delay_s=0.0):
        if value < 0:
            raise ValueError(f"VEAHarnessProbe: value must be >= 0, got {value}")
        end = time.monotonic() + delay_s
        while time.monotonic() < end:
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(0.02)
        text = f"probe:{value}"
        return io.NodeOutput(text, ui={"text": [text]})


class HarnessStubExtension(ComfyExtension):
    async def get_node_list(self):
        return [VEAHarnessProbe]


async def comfy_entrypoint():
    return HarnessStubExtension()
'''


def probe(value, node_id: str = "1", **inputs) -> dict:
    return {node_id: {"class_type": "VEAHarnessProbe", "inputs": {"value": value, **inputs}}}


def ui_workflow(node_type: str = "VEAHarnessProbe", value: int = 7) -> dict:
    """A hand-written UI-format workflow: probe (widget value) -> text -> PreviewAny (core)."""
    return {
        "last_node_id": 2,
        "last_link_id": 1,
        "nodes": [
            {
                "id": 1,
                "type": node_type,
                "pos": [100, 100],
                "size": [320, 110],
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": [{"name": "value", "type": "INT", "widget": {"name": "value"}, "link": None}],
                "outputs": [{"name": "text", "type": "STRING", "links": [1], "slot_index": 0}],
                "properties": {"Node name for S&R": node_type},
                "widgets_values": [value, 0.0],
            },
            {
                "id": 2,
                "type": "PreviewAny",
                "pos": [500, 100],
                "size": [320, 200],
                "flags": {},
                "order": 1,
                "mode": 0,
                "inputs": [{"name": "source", "type": "*", "link": 1}],
                "outputs": [],
                "properties": {"Node name for S&R": "PreviewAny"},
                "widgets_values": [],
            },
        ],
        "links": [[1, 1, 0, 2, 0, "STRING"]],
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


BROKEN_NAME = "VEAHarnessBroken"
# Two inputs with one id: every ComfyUI version refuses the schema when the pack loads.
BROKEN_PACK = STUB_PACK.replace('node_id="VEAHarnessProbe"', f'node_id="{BROKEN_NAME}"').replace(
    'io.Float.Input("delay_s"', 'io.Float.Input("value"'
)


def _packs(request) -> dict:
    """The stub pack (the server's pack), a broken pack beside it, and a linked model folder."""
    root = request.getfixturevalue("tmp_path_factory").mktemp("harness")
    pack = root / PACK_NAME
    pack.mkdir()
    (pack / "__init__.py").write_text(STUB_PACK)
    base = root / "base"
    (base / "custom_nodes" / BROKEN_NAME).mkdir(parents=True)
    (base / "custom_nodes" / BROKEN_NAME / "__init__.py").write_text(BROKEN_PACK)
    model_dir = root / "tiny-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    return {"pack_dir": pack, "base_dir": base, "models": {"vea_harness/tiny-model": model_dir}}


server = comfy_server_fixture(pack_name=PACK_NAME, configure=_packs, log_name="comfy_harness_server")


def test_server_lists_v3_stub_node(server):
    info = server.object_info()
    assert "VEAHarnessProbe" in info, server.log_tail()
    node = info["VEAHarnessProbe"]
    assert node["python_module"] == f"custom_nodes.{PACK_NAME}"
    assert node["input"]["required"]["value"][0] == "INT"
    assert node["input"]["required"]["value"][1]["max"] == 100
    assert node["input"]["optional"]["delay_s"][0] == "FLOAT"
    assert node["output"] == ["STRING"] and node["output_name"] == ["text"]
    assert node["output_node"] is True
    assert node["description"].startswith("Turns an integer")
    assert server.object_info("VEAHarnessProbe") == {"VEAHarnessProbe": node}
    assert server.pack_load_errors() == []


def test_prompt_runs_to_success_with_websocket_events(server):
    with server.ws_events() as ws:
        answer = server.queue(probe(3), client_id=ws.client_id)
        assert answer["http_status"] == 200
        assert answer["node_errors"] == {}
        entry = server.wait(answer["prompt_id"], timeout=30)
        ws.wait_for("execution_success", timeout=10, prompt_id=answer["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"] == {"1": {"text": ["probe:3"]}}
    executed = [m["data"] for m in ws.messages if m["type"] == "executed"]
    assert executed and executed[-1]["output"] == {"text": ["probe:3"]}
    assert ws.types().index("execution_start") < ws.types().index("execution_success")

    entry, status = server.run(probe(4), timeout=30)
    assert status == "success" and entry["outputs"]["1"]["text"] == ["probe:4"]


def test_node_exception_is_execution_error_and_server_keeps_serving(server):
    answer = server.queue(probe(-3))
    assert answer["http_status"] == 200 and answer["node_errors"] == {}
    entry = server.wait(answer["prompt_id"], timeout=30)
    assert entry["status"]["status_str"] == "error"
    error = execution_error(entry)
    assert error is not None, entry["status"]
    assert error["node_id"] == "1" and error["node_type"] == "VEAHarnessProbe"
    assert error["exception_type"] == "ValueError"
    assert "value must be >= 0, got -3" in error["exception_message"]

    entry, status = server.run(probe(5), timeout=30)
    assert status == "success" and entry["outputs"] == {"1": {"text": ["probe:5"]}}


def test_unknown_node_type_is_http_400(server):
    # 0.3.75 calls it "invalid_prompt", 0.33.0 "missing_node_type"; both refuse it with HTTP 400 and name it.
    answer = server.queue({"1": {"class_type": "VEANoSuchNode", "inputs": {}}})
    assert answer["http_status"] == 400
    assert answer["error"]["type"] in ("invalid_prompt", "missing_node_type")
    assert "VEANoSuchNode" in json.dumps(answer["error"])
    with pytest.raises(PromptRejected):
        server.run({"1": {"class_type": "VEANoSuchNode", "inputs": {}}})


def test_failed_input_checks_are_node_errors(server):
    # Only output invalid -> HTTP 400 "prompt_outputs_failed_validation".
    answer = server.queue(probe(1, delay_s=100.0))
    assert answer["http_status"] == 400
    assert answer["error"]["type"] == "prompt_outputs_failed_validation"
    [err] = answer["node_errors"]["1"]["errors"]
    assert err["type"] == "value_bigger_than_max" and err["extra_info"]["input_name"] == "delay_s"

    # An input named in validate_inputs' signature skips ComfyUI's own min/max checks:
    # value=300 (max 100) is accepted and runs, because validate_inputs(cls, value) exists.
    entry, status = server.run(probe(300), timeout=30)
    assert status == "success" and entry["outputs"]["1"]["text"] == ["probe:300"]

    # validate_inputs returning a string -> custom_validation_failed with the text in details.
    answer = server.queue(probe(13))
    assert answer["http_status"] == 400
    [err] = answer["node_errors"]["1"]["errors"]
    assert err["type"] == "custom_validation_failed"
    assert err["details"] == "value - 13 is refused by validate_inputs"

    # One invalid branch beside a valid one: HTTP 200, the valid branch runs, node_errors tells.
    prompt = {**probe(13, node_id="1"), **probe(6, node_id="2")}
    answer = server.queue(prompt)
    assert answer["http_status"] == 200 and set(answer["node_errors"]) == {"1"}
    entry = server.wait(answer["prompt_id"], timeout=30)
    assert entry["status"]["status_str"] == "success" and set(entry["outputs"]) == {"2"}
    with pytest.raises(PromptRejected, match="custom_validation_failed"):
        server.run(prompt)


def test_interrupt_stops_a_running_node(server):
    with server.ws_events() as ws:
        answer = server.queue(probe(8, delay_s=30.0), client_id=ws.client_id)
        assert answer["node_errors"] == {}
        ws.wait_for("executing", timeout=20, prompt_id=answer["prompt_id"])
        entry, took = server.interrupt_running(answer["prompt_id"], timeout=20)
    assert took < 10 and entry["status"]["status_str"] == "error" and "execution_interrupted" in status_messages(entry)
    assert server.run(probe(9), timeout=30)[1] == "success"


def test_view_serves_files(server):
    (server.input_dir / "harness.txt").write_bytes(b"hello harness")
    assert server.view("harness.txt", type="input") == b"hello harness"


def test_broken_pack_is_reported_and_models_are_linked(server):
    errors = server.pack_load_errors(BROKEN_NAME)
    assert any("Input ids must be unique" in line for line in errors), errors
    assert any("IMPORT FAILED" in line for line in errors), errors
    assert server.pack_load_errors() == []  # the good pack beside it loads
    assert BROKEN_NAME not in server.object_info()
    assert server.queue({"1": {"class_type": BROKEN_NAME, "inputs": {"value": 1}}})["http_status"] == 400
    linked = server.base_dir / "models" / "vea_harness" / "tiny-model"
    assert linked.is_symlink() and (linked / "config.json").read_text() == "{}"


def test_a_temp_base_directory_is_removed_on_exit(tmp_path):
    model_dir = tmp_path / "tiny-model"
    model_dir.mkdir()
    srv = ComfyServer(None, pack_name=None, models={"vea_harness/tiny-model": model_dir})
    srv._prepare_base()  # what start() does before launching main.py
    linked = srv.base_dir / "models" / "vea_harness" / "tiny-model"
    assert linked.is_symlink() and srv.base_dir.name.startswith("comfy-base-")
    srv.stop()
    assert not srv.base_dir.exists() and model_dir.is_dir()


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


@pytest.mark.frontend
def test_ui_workflow_loads_in_real_frontend_and_executes(server):
    from tests.comfy_frontend import graph_to_prompt, load_workflow, open_frontend, page_logs, screenshot

    with open_frontend(server) as page:
        assert load_workflow(page, ui_workflow("VEANoSuchNode")) == ["VEANoSuchNode"]
        assert load_workflow(page, ui_workflow(value=7)) == []
        prompt = graph_to_prompt(page)
        shot = screenshot(page, ARTIFACTS / f"comfy_harness_frontend-{server.version}.png")
        blocked = page_logs(page)["blocked"]
    assert shot.stat().st_size > 10_000
    assert all("127.0.0.1" not in url and "localhost" not in url for url in blocked)

    assert {node_id: node["class_type"] for node_id, node in prompt.items()} == {
        "1": "VEAHarnessProbe",
        "2": "PreviewAny",
    }
    assert prompt["1"]["inputs"]["value"] == 7
    assert prompt["2"]["inputs"]["source"] == ["1", 0]
    answer = server.queue(prompt)
    assert answer["node_errors"] == {}, json.dumps(answer)
    entry = server.wait(answer["prompt_id"], timeout=30)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["1"] == {"text": ["probe:7"]}
    assert entry["outputs"]["2"] == {"text": ["probe:7"]}
