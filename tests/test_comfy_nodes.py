"""The VEA nodes and shipped workflows on a real ComfyUI server and its real front end.

On the shared server (``tests/conftest.py``), whose ``models/VLM`` holds the tiny offline
checkpoints under the names the shipped workflows use, so the workflows run unmodified (answers from random weights are
meaningless; the tests check structure, geometry and numbers, not wording).
"""

from __future__ import annotations

import copy
import io
import json
import re
import time

import numpy as np
import pytest
from PIL import Image

from tests.comfy_frontend import load_workflow, open_frontend, screenshot
from tests.comfy_harness import (
    NEWER_WORKFLOWS,
    REPO,
    execution_error,
    input_options,
    load_vlm_node,
    node_inputs,
    prompt_error,
    status_messages,
    workflow_runs_on,
)

pytestmark = pytest.mark.comfy

WORKFLOWS = REPO / "workflows"
ARTIFACTS = REPO / "artifacts"
NAMES = ("vea_basic", "vea_delegate", "vea_compare", "vea_zoom", "vea_boxes", "vea_sam3")
LOAD_LINE = re.compile(r"loaded .*\((qwen2_5_vl|llava), \d+ decoder layers")


ANSWERING = ("VEAAnswer", "VEAAllInOne", "VEAZoom")  # nodes with max_new_tokens


def api(name: str, **answer_overrides) -> dict:
    prompt = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    for node in prompt.values():
        if node["class_type"] in ANSWERING:
            node["inputs"].update({"max_new_tokens": 6, **answer_overrides})
    return prompt


def node_id(prompt: dict, class_type: str, nth: int = 0) -> str:
    return [k for k, v in prompt.items() if v["class_type"] == class_type][nth]


def fetch_image(server, ui_image: dict) -> np.ndarray:
    data = server.view(ui_image["filename"], ui_image.get("subfolder", ""), ui_image.get("type", "output"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64) / 255.0


def run_ok(server, prompt: dict, timeout: float = 180) -> dict:
    answer = server.queue(prompt)
    assert answer["http_status"] == 200 and answer.get("node_errors") == {}, answer
    entry = server.wait(answer["prompt_id"], timeout=timeout)
    assert entry["status"]["status_str"] == "success", execution_error(entry) or server.log_tail()
    return entry


def model_canvas(vlm, image_path) -> np.ndarray:
    """The canvas ``vlm`` renders of the image file, float64 0..1 ``[H, W, 3]``."""
    from vea_engine.inputs import render_canvases

    canvases = render_canvases(vlm, [Image.open(image_path)])
    return canvases[0].pixels.astype(np.float64) / 255.0


# ---- registration ---------------------------------------------------------------------------
EXPECTED_INPUTS = {
    "VEALoadVLM": [
        "checkpoint",
        "hub_id",
        "dtype",
        "device",
        "attention",
        "resolution",
        "max_pixels",
        "max_memory",
        "quantization",
    ],
    "VEALayers": ["model", "mode", "custom_layers", "profile_path"],
    "VEAProfileLayers": ["model", "dataset", "rule", "top_fraction", "limit", "filename"],
    "VEAExtractAttention": [
        "model",
        "image",
        "question",
        "layers",
        "question_per_line",
        "prompt_style",
        "signal",
        "sinks",
    ],
    "VEADenoise": ["attention", "lam"],
    "VEASmooth": ["sigma", "attention", "mask"],
    "VEANormalize": ["mask"],
    "VEAAlignMask": ["mask", "attention", "image", "fill", "answer_model"],
    "VEABlend": ["image", "mask", "alpha", "rounding"],
    "VEAAnswer": ["model", "image", "question", "question_per_line", "prompt_style", "custom_prompt", "max_new_tokens"],
    "VEAAllInOne": [
        "model",
        "image",
        "question",
        "question_per_line",
        "layers",
        "custom_layers",
        "lam",
        "sigma",
        "alpha",
        "max_new_tokens",
        "signal",
        "sinks",
        "delegate",
    ],
    "VEAEvidenceBoxes": ["image", "mask", "attention", "mode", "threshold", "min_area", "max_boxes", "lam"],
    "VEAZoom": [
        "model",
        "image",
        "question",
        "question_per_line",
        "mask",
        "attention",
        "min_scale",
        "max_scale",
        "aspect",
        "lam",
        "max_new_tokens",
    ],
}
#: Inputs added where the server has ComfyUI's core bounding boxes (0.33+).
CORE_BOX_INPUTS = {"VEAZoom": ["bboxes"]}


def test_object_info_lists_every_node_documented(server, tiny_model_dirs):
    assert server.pack_load_errors() == [], server.log_tail()
    info = server.object_info()
    listed = sorted(k for k in info if info[k].get("python_module") == "custom_nodes.ComfyUI-VEA")
    node_list = json.loads((REPO / "node_list.json").read_text())
    assert listed == sorted(node_list) and set(EXPECTED_INPUTS) <= set(listed)
    for name in listed:
        node = info[name]
        declared = node_inputs(node)  # the same names whether an input is flat or inside a DynamicCombo option
        if name in EXPECTED_INPUTS:
            boxes = CORE_BOX_INPUTS.get(name, []) if "PrimitiveBoundingBox" in info else []
            assert sorted(declared) == sorted(EXPECTED_INPUTS[name] + boxes), name
        assert node["category"].startswith("VEA") and len(node["description"]) > 40, name
        for input_name, spec in declared.items():
            assert spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
        assert all(node["output_tooltips"]), f"{name} has an output without tooltip"
    checkpoints = input_options(node_inputs(info["VEALoadVLM"])["checkpoint"])
    assert {"Qwen2.5-VL-7B-Instruct", "llava-1.5-7b-hf", "nested/qwen2_vl-tiny", "extra-llava"} <= set(checkpoints)
    assert {f"{family}-tiny" for family in tiny_model_dirs} <= set(checkpoints)  # every family the session built
    assert info["VEAAnswer"]["output_is_list"] == [True]


# ---- shipped API workflows ------------------------------------------------------------------
def test_basic_workflow_runs_and_highlights(server, vlm_of):
    prompt = api("vea_basic")
    entry = run_ok(server, prompt)
    outputs = entry["outputs"]
    answers = outputs[node_id(prompt, "PreviewAny")]["text"]
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert outputs[node_id(prompt, "VEAAnswer")]["text"] == answers
    highlighted = fetch_image(server, outputs[node_id(prompt, "SaveImage")]["images"][0])
    canvas = model_canvas(vlm_of("qwen2_5_vl"), WORKFLOWS / "vea_example.png")
    assert highlighted.shape == canvas.shape
    # out = canvas * (0.5 + 0.5 * E): never brighter, dimmed to half where E = 0, kept where E = 1
    assert (highlighted <= canvas + 1.5 / 255).all()
    bright = canvas > 0.3
    gain = highlighted[bright] / canvas[bright]
    assert gain.min() < 0.5 + 0.03 and gain.max() > 1 - 0.03
    heat = fetch_image(server, outputs[node_id(prompt, "PreviewImage")]["images"][0])
    assert heat.shape == canvas.shape


def test_delegate_workflow_runs_on_the_answering_models_canvas(server, vlm_of):
    prompt = api("vea_delegate")
    entry = run_ok(server, prompt)
    outputs = entry["outputs"]
    assert len(outputs[node_id(prompt, "PreviewAny")]["text"]) == 1
    highlighted = fetch_image(server, outputs[node_id(prompt, "SaveImage")]["images"][0])
    llava_canvas = model_canvas(vlm_of("llava"), WORKFLOWS / "vea_example.png")
    assert highlighted.shape == llava_canvas.shape  # the Qwen-made mask lands on LLaVA's 84x84 input
    assert (highlighted <= llava_canvas + 1.5 / 255).all()


def test_batch_of_images_gives_one_answer_each(server):
    prompt = api("vea_basic")
    prompt["90"] = {
        "class_type": "RepeatImageBatch",
        "inputs": {"image": [node_id(prompt, "LoadImage"), 0], "amount": 3},
    }
    prompt[node_id(prompt, "VEAExtractAttention")]["inputs"]["image"] = ["90", 0]
    entry = run_ok(server, prompt)
    assert len(entry["outputs"][node_id(prompt, "VEAAnswer")]["text"]) == 3


# ---- caching and interruption -----------------------------------------------------------------
def test_running_twice_does_not_reload_the_model(server):
    prompt = api("vea_compare")
    run_ok(server, prompt)
    loads_before = len(LOAD_LINE.findall(server.log_text()))
    prompt[node_id(prompt, "PrimitiveStringMultiline")]["inputs"]["value"] = "A different question?"
    entry = run_ok(server, prompt)
    assert len(LOAD_LINE.findall(server.log_text())) == loads_before
    cached = status_messages(entry).get("execution_cached", {}).get("nodes", [])
    assert node_id(prompt, "VEALoadVLM") in cached
    # two loader nodes with the same settings in one prompt load once
    twin = copy.deepcopy(prompt)
    loader = node_id(twin, "VEALoadVLM")
    twin["99"] = copy.deepcopy(twin[loader])
    twin["99"]["inputs"]["dtype"] = "float32"
    twin[loader]["inputs"]["dtype"] = "float32"
    twin[node_id(twin, "VEAAllInOne")]["inputs"]["delegate"] = ["99", 0]
    run_ok(server, twin)
    assert len(LOAD_LINE.findall(server.log_text())) == loads_before + 1


def test_interrupt_stops_generation_and_the_next_prompt_succeeds(server):
    prompt = api("vea_basic", max_new_tokens=2048)  # prompt + new tokens stay within the 4096-token context
    prompt["90"] = {
        "class_type": "RepeatImageBatch",
        "inputs": {"image": [node_id(prompt, "LoadImage"), 0], "amount": 48},
    }
    answer_node = node_id(prompt, "VEAAnswer")
    prompt[answer_node]["inputs"]["image"] = ["90", 0]
    prompt[answer_node]["inputs"]["prompt_style"] = "custom"
    prompt[answer_node]["inputs"]["custom_prompt"] = "{question} " * 40
    with server.ws_events() as ws:
        queued = server.queue(prompt, client_id=ws.client_id)
        assert queued["node_errors"] == {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the answer node reports generation progress
            if any(m["type"] == "progress" and m["data"].get("node") == answer_node for m in list(ws.messages)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the answer node never reported progress")
        entry, took = server.interrupt_running(queued["prompt_id"], timeout=60)
    assert took < 20 and entry["status"]["status_str"] == "error" and "execution_interrupted" in status_messages(entry)
    run_ok(server, api("vea_compare"))  # the model is still usable


# ---- bad input through the API -------------------------------------------------------------------
@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing_model", r"checkpoint folder 'nope-model' is not in models/VLM .*put the checkpoint folder"),
        ("path_outside_models", r"checkpoint folder '\.\./\.\./VLM/llava-1\.5-7b-hf' is not in models/VLM"),
        ("empty_question", r"question must be a non-empty string, got '   '"),
        ("hub_without_id", r"hub_id is empty"),
        ("layer_out_of_range", r"layer\(s\) \[99\] out of range for a model with 6 decoder layers"),
        ("questions_vs_batch", r"got 2 questions for 1 images"),
        ("mask_image_mismatch", r"align it first"),
        ("custom_without_placeholder", r"no '\{question\}' placeholder"),
    ],
)
def test_bad_input_gives_a_clear_error_and_the_server_keeps_serving(server, case, expected):
    prompt = api("vea_basic")
    loader, extract = node_id(prompt, "VEALoadVLM"), node_id(prompt, "VEAExtractAttention")
    question = node_id(prompt, "PrimitiveStringMultiline")
    if case == "missing_model":
        prompt[loader]["inputs"]["checkpoint"] = "nope-model"
    elif case == "path_outside_models":
        prompt[loader]["inputs"]["checkpoint"] = "../../VLM/llava-1.5-7b-hf"
    elif case == "empty_question":
        prompt[question]["inputs"]["value"] = "   "
    elif case == "hub_without_id":
        prompt[loader]["inputs"]["checkpoint"] = "(use hub_id)"
    elif case == "layer_out_of_range":
        layers = node_id(prompt, "VEALayers")
        prompt[layers]["inputs"].update({"mode": "custom", "custom_layers": "1, 99"})
    elif case == "questions_vs_batch":
        prompt[question]["inputs"]["value"] = "What is it?\nAnd this?"
        prompt[extract]["inputs"]["question_per_line"] = True
    elif case == "mask_image_mismatch":
        prompt["90"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
        prompt[node_id(prompt, "VEABlend")]["inputs"]["mask"] = ["90", 0]
    elif case == "custom_without_placeholder":
        prompt[node_id(prompt, "VEAAnswer")]["inputs"].update({"prompt_style": "custom", "custom_prompt": "Hi"})
    assert re.search(expected, prompt_error(server, prompt)), case
    run_ok(server, api("vea_compare"))


# ---- shipped UI workflows in the real front end ----------------------------------------------------
@pytest.mark.frontend
def test_ui_workflows_are_served_as_templates_and_load(server):
    """The server offers every shipped UI workflow as a template, byte for byte, and the front end loads each
    with no missing node (it reports one no pack defines). How each converts to its shipped API prompt and
    lays out: ``tests/test_workflow_layout.py``; the API prompts run in the tests above and in
    ``tests/test_evidence_nodes.py``; a converted prompt runs in ``tests/test_dynamic_inputs.py``."""
    templates = server.get_json("/api/workflow_templates")
    assert sorted(templates.get("ComfyUI-VEA", [])) == sorted(p.stem for p in WORKFLOWS.glob("*.json")) == sorted(NAMES)
    with open_frontend(server) as page:
        unknown = json.loads((WORKFLOWS / "vea_compare.json").read_text())
        unknown["nodes"][0]["type"] = "VEANoSuchNode"
        assert load_workflow(page, unknown) == ["VEANoSuchNode"]
        for name in NAMES:
            workflow = server.get_json(f"/api/workflow_templates/ComfyUI-VEA/{name}.json")
            assert workflow == json.loads((WORKFLOWS / f"{name}.json").read_text())
            missing = [] if workflow_runs_on(name, server.version) else NEWER_WORKFLOWS[name][1]
            assert load_workflow(page, workflow) == missing, name
            screenshot(page, ARTIFACTS / f"frontend_{name}-{server.version}.png")


# ---- profiling node -> profile JSON -> VEA Layers (mode 'profile') -> attention --------------------------
def test_profile_node_round_trips_into_the_attention_node(server, tmp_path):
    from vea_engine.synthetic import write_dataset

    manifest = write_dataset(server.input_dir / "vea_data", n=3, seed=5, size=(192, 160))  # datasets live in input/
    question = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "What is the code?"}}
    loader = load_vlm_node()
    image = {"class_type": "LoadImage", "inputs": {"image": "vea_example.png"}}

    def extract(layers_ref):
        return {
            "class_type": "VEAExtractAttention",
            "inputs": {
                "model": ["2", 0],
                "image": ["3", 0],
                "question": ["1", 0],
                "layers": layers_ref,
                "question_per_line": False,
                "prompt_style": "qa",
            },
        }

    profile_prompt = {
        "1": question,
        "2": loader,
        "3": image,
        "4": {
            "class_type": "VEAProfileLayers",
            "inputs": {
                "model": ["2", 0],
                "dataset": str(manifest),
                "rule": "any",
                "top_fraction": 0.34,
                "limit": 0,
                "filename": "vea/test_profile.json",
            },
        },
        "5": extract(["4", 0]),
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["4", 1]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["5", 1]}},
    }
    entry = run_ok(server, profile_prompt)
    saved = json.loads((server.output_dir / "vea" / "test_profile.json").read_text())
    assert len(saved["layers"]) == 3 and saved["n_samples"] + saved["n_skipped"] == 3  # ceil(0.34 * 6) layers
    plot = fetch_image(server, entry["outputs"]["6"]["images"][0])
    assert plot.shape[1] > plot.shape[0] > 100  # a real, landscape chart
    reuse = {
        "1": question,
        "2": loader,
        "3": image,
        "4": {
            "class_type": "VEALayers",
            "inputs": {
                "model": ["2", 0],
                "mode": "profile",
                "custom_layers": "",
                "profile_path": "vea/test_profile.json",
            },
        },
        "5": extract(["4", 0]),
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["5", 1]}},
    }
    run_ok(server, reuse)
    bad = copy.deepcopy(reuse)
    bad["4"]["inputs"]["profile_path"] = "vea/missing.json"
    assert "is not a file in ComfyUI's output or input folder" in prompt_error(server, bad)
    outside = copy.deepcopy(reuse)
    outside["4"]["inputs"]["profile_path"] = "../../../../etc/passwd"
    assert "lies outside ComfyUI's output or input folder" in prompt_error(server, outside)
    outside = copy.deepcopy(profile_prompt)
    outside["4"]["inputs"]["filename"] = "../../../../tmp/x/profile.json"
    assert "is not a file name inside ComfyUI's output folder" in prompt_error(server, outside)
    outside["4"]["inputs"]["filename"] = "vea/p.json"
    outside["4"]["inputs"]["dataset"] = str(tmp_path / "elsewhere.jsonl")
    assert "lies outside ComfyUI's input folder" in prompt_error(server, outside)
