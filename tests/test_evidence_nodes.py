"""VEA Evidence Boxes and VEA Zoom on a real ComfyUI server: the shipped ``vea_boxes`` and ``vea_zoom``
workflows run unmodified on the shared server (``tests/conftest.py``: tiny offline checkpoints under the
names they use), with checked outputs, on every installed ComfyUI version. ComfyUI's core bounding
boxes (0.33+) go from Evidence Boxes into Draw BBoxes, SAM 3 (``vea_sam3``) and Zoom; on 0.3.75 the
pack loads without them and the JSON path works.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.comfy_frontend import load_workflow, open_frontend
from tests.comfy_harness import REPO, execution_error, prompt_error, workflow_runs_on

pytestmark = pytest.mark.comfy

WORKFLOWS = REPO / "workflows"


def api(name: str) -> dict:
    prompt = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    for node in prompt.values():
        if node["class_type"] == "VEAZoom":
            node["inputs"]["max_new_tokens"] = 4
    return prompt


def node_id(prompt: dict, class_type: str, nth: int = 0) -> str:
    return [k for k, v in prompt.items() if v["class_type"] == class_type][nth]


def run_ok(server, prompt: dict, timeout: float = 180) -> dict:
    answer = server.queue(prompt)
    assert answer["http_status"] == 200 and answer.get("node_errors") == {}, answer
    entry = server.wait(answer["prompt_id"], timeout=timeout)
    assert entry["status"]["status_str"] == "success", execution_error(entry) or server.log_tail()
    return entry


def fetch(server, ui_image: dict) -> np.ndarray:
    data = server.view(ui_image["filename"], ui_image.get("subfolder", ""), ui_image.get("type", "output"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def example() -> np.ndarray:
    return np.asarray(Image.open(WORKFLOWS / "vea_example.png").convert("RGB"))


def test_boxes_workflow_draws_saves_and_crops_its_boxes(server):
    prompt = api("vea_boxes")
    outputs = run_ok(server, prompt)["outputs"]
    original = example()
    H, W = original.shape[:2]
    boxes = json.loads(outputs[node_id(prompt, "VEAEvidenceBoxes")]["text"][0])
    assert json.loads(outputs[node_id(prompt, "PreviewAny")]["text"][0]) == boxes
    assert len(boxes) == 1 and 1 <= len(boxes[0]) <= 4  # one image, max_boxes 4
    scores = [b["score"] for b in boxes[0]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    for entry in boxes[0]:
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    saved = fetch(server, outputs[node_id(prompt, "SaveImage")]["images"][0])
    assert saved.shape == original.shape
    x0, y0, x1, y1 = boxes[0][0]["box"]
    assert tuple(saved[y0, x0]) == (255, 40, 40) and tuple(saved[y1 - 1, x1 - 1]) == (255, 40, 40)  # the best box
    crops = [fetch(server, image) for image in outputs[node_id(prompt, "PreviewImage", 0)]["images"]]
    assert [c.shape[:2] for c in crops] == [(b["box"][3] - b["box"][1], b["box"][2] - b["box"][0]) for b in boxes[0]]
    bx0, by0, bx1, by1 = boxes[0][0]["box"]
    assert np.abs(crops[0].astype(int) - original[by0:by1, bx0:bx1].astype(int)).max() <= 1  # the original's pixels
    mask = fetch(server, outputs[node_id(prompt, "PreviewImage", 1)]["images"][0])[..., 0] > 127
    inside = np.zeros((H, W), dtype=bool)
    for entry in boxes[0]:
        x0, y0, x1, y1 = entry["box"]
        inside[y0:y1, x0:x1] = True
    assert np.array_equal(mask, inside)


def test_zoom_workflow_answers_with_the_crop_of_its_window(server):
    prompt = api("vea_zoom")
    outputs = run_ok(server, prompt)["outputs"]
    original = example()
    H, W = original.shape[:2]
    zoom = outputs[node_id(prompt, "VEAZoom")]["text"]
    answers, window_text = zoom[:-1], zoom[-1]
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert outputs[node_id(prompt, "PreviewAny", 0)]["text"] == answers
    windows = json.loads(window_text)
    assert json.loads(outputs[node_id(prompt, "PreviewAny", 1)]["text"][0]) == windows
    (window,) = windows
    x0, y0, x1, y1 = window["box"]
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H and 0 <= window["score"] <= 1
    # a real zoom: a window side is at most 60% of the 448x448 image's side (sizes 134..268, tests/test_zoom.py)
    assert (
        x1 - x0 <= 0.6 * W and y1 - y0 <= 0.6 * H and (x1 - x0, y1 - y0) in [(s, s) for s in (134, 168, 202, 235, 268)]
    )
    (crop,) = [fetch(server, image) for image in outputs[node_id(prompt, "PreviewImage")]["images"]]
    assert crop.shape[:2] == (y1 - y0, x1 - x0)
    assert np.array_equal(crop, original[y0:y1, x0:x1])  # full resolution, from the original


def test_the_zoomed_answer_is_the_answer_on_the_crop(server):
    """The example's zoom answered by a one-image family (LLaVA-1.5 answers on the crop alone) equals VEA Answer
    given the zoom's crop output: the answer is computed on the crop."""
    prompt = api("vea_zoom")
    zoom = node_id(prompt, "VEAZoom")
    prompt["91"] = {"class_type": "VEALoadVLM", "inputs": dict(prompt[node_id(prompt, "VEALoadVLM")]["inputs"])}
    prompt["91"]["inputs"]["checkpoint"] = "llava-1.5-7b-hf"
    prompt[zoom]["inputs"]["model"] = ["91", 0]
    prompt["92"] = {"class_type": "VEAAnswer", "inputs": {"model": ["91", 0], "image": [zoom, 1],
                    "question": prompt[zoom]["inputs"]["question"], "question_per_line": False, "prompt_style": "qa",
                    "custom_prompt": "{question}", "max_new_tokens": 4}}  # fmt: skip
    prompt["93"] = {"class_type": "PreviewAny", "inputs": {"source": ["92", 0]}}
    outputs = run_ok(server, prompt)["outputs"]
    (window,) = json.loads(outputs[node_id(prompt, "PreviewAny", 1)]["text"][0])
    x0, y0, x1, y1 = window["box"]
    assert x1 - x0 <= 0.6 * 448 and y1 - y0 <= 0.6 * 448
    zoomed = outputs[node_id(prompt, "PreviewAny", 0)]["text"]
    assert len(zoomed) == 1 and outputs["93"]["text"] == zoomed, (zoomed, outputs["93"]["text"])


def test_zoom_gives_one_answer_and_one_crop_per_image_and_answers_on_the_crop_alone(server):
    prompt = api("vea_zoom")
    prompt["90"] = {
        "class_type": "RepeatImageBatch",
        "inputs": {"image": [node_id(prompt, "LoadImage"), 0], "amount": 2},
    }
    prompt[node_id(prompt, "VEAExtractAttention")]["inputs"]["image"] = ["90", 0]
    zoom = node_id(prompt, "VEAZoom")
    prompt[zoom]["inputs"]["image"] = ["90", 0]
    prompt["91"] = {"class_type": "VEALoadVLM", "inputs": dict(prompt[node_id(prompt, "VEALoadVLM")]["inputs"])}
    prompt["91"]["inputs"]["checkpoint"] = "llava-1.5-7b-hf"  # a one-image family, zooming on Qwen's attention
    prompt[zoom]["inputs"]["model"] = ["91", 0]
    outputs = run_ok(server, prompt)["outputs"]
    answers = outputs[node_id(prompt, "PreviewAny", 0)]["text"]
    assert len(answers) == 2
    windows = json.loads(outputs[node_id(prompt, "PreviewAny", 1)]["text"][0])
    assert len(windows) == 2 and windows[0] == windows[1]  # the same image twice
    crops = outputs[node_id(prompt, "PreviewImage")]["images"]
    assert len(crops) == 2


def test_boxes_of_a_mask_in_original_pixels_and_a_clear_error_for_a_foreign_mask(server):
    prompt = api("vea_boxes")
    boxes_node = node_id(prompt, "VEAEvidenceBoxes")
    original = example()
    H, W = original.shape[:2]
    # a mask drawn on the original: a solid square composited into an empty mask of the image's size
    prompt["90"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": W, "height": H}}
    prompt["91"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 40, "height": 30}}
    prompt["92"] = {
        "class_type": "MaskComposite",
        "inputs": {"destination": ["90", 0], "source": ["91", 0], "x": 100, "y": 60, "operation": "add"},
    }
    prompt[boxes_node]["inputs"]["mask"] = ["92", 0]
    outputs = run_ok(server, prompt)["outputs"]
    boxes = json.loads(outputs[boxes_node]["text"][0])
    assert boxes == [[{"box": [100, 60, 140, 90], "score": 1.0}]]
    prompt[boxes_node]["inputs"]["mask"] = ["91", 0]  # 40x30: neither the image's size nor the model input's
    message = prompt_error(server, prompt)
    assert re.search(
        r"VEA Evidence Boxes: the mask is 40x30, neither the image \(448x448\) nor the attention's model input "
        r"\(\d+x\d+\) \(W x H\); connect",
        message,
    ), message
    assert "VEA Align Mask without answer_model" in message


# ---- ComfyUI's core bounding boxes (0.33+) ---------------------------------------------------------------
def drawn_mask_boxes() -> dict:
    """Evidence Boxes (the shipped widget values) of a mask drawn on the example image, no model: one 40x30
    square at x 100, y 60; node "6" is Evidence Boxes, "3" the image."""
    shipped = api("vea_boxes")
    H, W = example().shape[:2]
    inputs = {k: v for k, v in shipped[node_id(shipped, "VEAEvidenceBoxes")]["inputs"].items() if k != "attention"}
    inputs.update(image=["3", 0], mask=["92", 0])
    return {
        "3": shipped[node_id(shipped, "LoadImage")],
        "90": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": W, "height": H}},
        "91": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 40, "height": 30}},
        "92": {
            "class_type": "MaskComposite",
            "inputs": {"destination": ["90", 0], "source": ["91", 0], "x": 100, "y": 60, "operation": "add"},
        },
        "6": {"class_type": "VEAEvidenceBoxes", "inputs": inputs},
    }


def test_core_bounding_boxes_feed_draw_bboxes_and_zoom_where_the_server_has_them(server):
    info = server.object_info()
    zoom_inputs = {**info["VEAZoom"]["input"]["required"], **info["VEAZoom"]["input"].get("optional", {})}
    prompt = drawn_mask_boxes()
    if "DrawBBoxes" not in info:  # ComfyUI 0.3.75: no core boxes; the pack loads and the JSON path works
        assert server.version == "0.3.75" and server.pack_load_errors() == []
        assert (
            info["VEAEvidenceBoxes"]["output"] == ["STRING", "MASK", "IMAGE", "IMAGE"] and "bboxes" not in zoom_inputs
        )
        outputs = run_ok(server, prompt)["outputs"]
        assert json.loads(outputs["6"]["text"][0]) == [[{"box": [100, 60, 140, 90], "score": 1.0}]]
        return
    assert info["VEAEvidenceBoxes"]["output"][4] == "BOUNDING_BOX" and zoom_inputs["bboxes"][0] == "BOUNDING_BOX"
    prompt["7"] = {"class_type": "DrawBBoxes", "inputs": {"image": ["3", 0], "bboxes": ["6", 4]}}
    prompt["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "vea/test_core_boxes"}}
    zoom = api("vea_zoom")
    zoom_node = {k: v for k, v in zoom[node_id(zoom, "VEAZoom")]["inputs"].items() if k != "attention"}
    zoom_node.update(model=["2", 0], image=["3", 0], question="What is red?", max_new_tokens=2, bboxes=["6", 4])
    prompt["2"] = zoom[node_id(zoom, "VEALoadVLM")]
    prompt["10"] = {"class_type": "VEAZoom", "inputs": zoom_node}  # zoomed where Evidence Boxes' box is
    prompt["11"] = {"class_type": "PrimitiveBoundingBox", "inputs": {"x": 10, "y": 20, "width": 50, "height": 40}}
    prompt["12"] = {"class_type": "VEAZoom", "inputs": {**zoom_node, "bboxes": ["11", 0]}}  # a user's own box
    prompt["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["10", 1]}}
    prompt["14"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 1]}}
    outputs = run_ok(server, prompt)["outputs"]  # node_errors == {}
    assert json.loads(outputs["6"]["text"][0]) == [[{"box": [100, 60, 140, 90], "score": 1.0}]]
    # Draw BBoxes drew [x, y, x + width, y + height] = [100, 60, 140, 90], 3 px wide inwards, red (no label)
    original, drawn = example().astype(int), fetch(server, outputs["8"]["images"][0]).astype(int)
    outline = np.zeros(original.shape[:2], dtype=bool)
    outline[60:91, 100:141] = True
    outline[63:88, 103:138] = False
    assert (drawn[outline] == (255, 0, 0)).all() and np.abs(drawn[~outline] - original[~outline]).max() <= 1
    for node, preview, box in [("10", "13", [100, 60, 140, 90]), ("12", "14", [10, 20, 60, 60])]:
        assert json.loads(outputs[node]["text"][-1]) == [{"box": box, "score": None}]
        (crop,) = [fetch(server, image) for image in outputs[preview]["images"]]
        assert np.array_equal(crop, example()[box[1] : box[3], box[0] : box[2]])


RECONNECT_JS = """([boxesId, samId]) => {
  const graph = window.app.graph;
  const boxes = graph.getNodeById(boxesId), sam = graph.getNodeById(samId);
  const out = boxes.outputs.findIndex(o => o.name === "bboxes"), json = boxes.outputs.findIndex(o => o.name === "boxes");
  const into = sam.inputs.findIndex(i => i.name === "bboxes");
  const types = [boxes.outputs[out].type, sam.inputs[into].type];
  sam.disconnectInput(into);
  const wrong = !!boxes.connect(json, sam, into);  // the JSON string into a bounding-box input
  sam.disconnectInput(into);
  const right = !!boxes.connect(out, sam, into);
  return {types, wrong, right};
}"""


@pytest.mark.frontend
def test_sam3_workflow_validates_in_the_front_end_and_draws_its_boxes_through_the_server(server):
    ui = json.loads((WORKFLOWS / "vea_sam3.json").read_text())
    shipped = api("vea_sam3")
    if not workflow_runs_on("vea_sam3", server.version):
        pytest.skip("ComfyUI 0.3.75 has no SAM 3 nor Draw BBoxes (test_comfy_nodes.py: the template names them)")
    boxes, sam = node_id(shipped, "VEAEvidenceBoxes"), node_id(shipped, "SAM3_Detect")
    with open_frontend(server) as page:
        assert load_workflow(page, ui) == []
        checked = page.evaluate(RECONNECT_JS, [int(boxes), int(sam)])
    # the front end's own type check: the core-box output fits SAM 3's boxes input, the JSON string does not
    assert checked == {"types": ["BOUNDING_BOX", "BOUNDING_BOX"], "wrong": False, "right": True}
    # the server validates the whole graph (SAM 3's checkpoint is an empty file here), and runs it without SAM 3
    draw_only = {k: v for k, v in shipped.items() if int(k) <= 8}  # up to Draw BBoxes and its Save Image
    assert {v["class_type"] for v in draw_only.values()} >= {"VEAEvidenceBoxes", "DrawBBoxes", "SaveImage"}
    outputs = run_ok(server, draw_only)["outputs"]  # node_errors == {}
    queued = server.queue(shipped)
    assert queued["http_status"] == 200 and queued["node_errors"] == {}, queued
    error = execution_error(server.wait(queued["prompt_id"], timeout=180))
    assert error["node_type"] == "CheckpointLoaderSimple", error  # only the missing weights stop it
    # Draw BBoxes drew Evidence Boxes' boxes where the JSON says: each box's corners in the first colour
    (image_boxes,) = json.loads(outputs[boxes]["text"][0])
    drawn = fetch(server, outputs[node_id(shipped, "SaveImage")]["images"][0])
    assert drawn.shape == example().shape
    for entry in image_boxes:
        x0, y0, x1, y1 = entry["box"]
        assert tuple(drawn[y0, x0]) == (255, 0, 0) and tuple(drawn[min(y1, drawn.shape[0] - 1), x0]) == (255, 0, 0)
