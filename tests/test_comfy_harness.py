"""The ComfyUI test harness against the real server and front end, with a throwaway V3 stub pack.

The stub pack is written into a temp folder at run time; it has one node, VEAHarnessProbe
(INT -> STRING, output node), that raises on a negative value, refuses 13 in
validate_inputs, and can wait (interruptibly) for ``delay_s`` seconds.
"""

from __future__ import annotations

import json

import pytest

from tests.comfy_harness import REPO, ComfyServer, PromptRejected, execution_error, status_messages

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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pack = tmp_path_factory.mktemp("stub") / PACK_NAME
    pack.mkdir()
    (pack / "__init__.py").write_text(STUB_PACK)
    ARTIFACTS.mkdir(exist_ok=True)
    with ComfyServer(pack, pack_name=PACK_NAME, log_path=ARTIFACTS / "comfy_harness_server.log") as srv:
        yield srv


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
    answer = server.queue({"1": {"class_type": "VEANoSuchNode", "inputs": {}}})
    assert answer["http_status"] == 400
    assert answer["error"]["type"] == "invalid_prompt"
    assert "VEANoSuchNode" in answer["error"]["message"]
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


def test_broken_pack_is_reported_and_models_are_linked(tmp_path):
    pack = tmp_path / "VEAHarnessBroken"
    pack.mkdir()
    # V3 rejects an input and an output with the same id when the schema is built.
    (pack / "__init__.py").write_text(
        STUB_PACK.replace('io.String.Output(display_name="text"', 'io.String.Output("value"')
    )
    model_dir = tmp_path / "tiny-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    with ComfyServer(pack, pack_name=pack.name, models={"vea_harness/tiny-model": model_dir}) as srv:
        errors = srv.pack_load_errors()
        assert any("Ids must be unique between inputs and outputs" in line for line in errors), errors
        assert any("IMPORT FAILED" in line for line in errors), errors
        assert "VEAHarnessProbe" not in srv.object_info()
        linked = srv.base_dir / "models" / "vea_harness" / "tiny-model"
        assert linked.is_symlink() and (linked / "config.json").read_text() == "{}"
        assert srv.queue({"1": {"class_type": "VEAHarnessProbe", "inputs": {"value": 1}}})["http_status"] == 400
    assert not linked.exists()  # the temp base directory is removed on exit


@pytest.mark.frontend
def test_ui_workflow_loads_in_real_frontend_and_executes(server):
    from tests.comfy_frontend import graph_to_prompt, load_workflow, open_frontend, page_logs, screenshot

    with open_frontend(server) as page:
        assert load_workflow(page, ui_workflow("VEANoSuchNode")) == ["VEANoSuchNode"]
        assert load_workflow(page, ui_workflow(value=7)) == []
        prompt = graph_to_prompt(page)
        shot = screenshot(page, ARTIFACTS / "comfy_harness_frontend.png")
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
