"""VEA Extract Attention's signal and sinks options on the real ComfyUI server (every installed version).

Each signal's map, painted and min-max normalised by the pack's own mask nodes and saved as an 8-bit
image, equals the engine's :func:`vea_engine.signals.attribute` on the same tiny checkpoint and image
(within one level). A prompt without the new inputs (an older workflow) runs as before. On the shared
server (``tests/conftest.py``), which has the example image and the tiny Qwen2.5-VL under its shipped name.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.comfy_harness import REPO, execution_error, load_vlm_node, prompt_error

pytestmark = pytest.mark.comfy

IMAGE = REPO / "workflows" / "vea_example.png"
QUESTION = "What is the serial number?"
LAYERS = (1, 3, 4)


#: Extract Attention options of each branch of the prompt; {} is an older workflow without the new inputs.
CASES = {
    "older-workflow": {},
    "attention+sinks": {"signal": "attention", "sinks": True},
    "relatt": {"signal": "relatt", "sinks": False},
    "grad": {"signal": "grad"},
}


def _prompt(cases: dict) -> dict:
    """Load -> layers 1,3,4 -> per case: Extract Attention (its options) -> paint (sigma 0) -> normalise -> saved."""
    prompt = {
        "1": load_vlm_node(dtype="float32", device="cpu", attention="sdpa"),
        "2": {"class_type": "LoadImage", "inputs": {"image": "vea_example.png"}},
        "3": {
            "class_type": "VEALayers",
            "inputs": {"model": ["1", 0], "mode": "custom", "custom_layers": ",".join(map(str, LAYERS))},
        },
    }
    for i, (name, options) in enumerate(cases.items()):
        extract, smooth, norm, image, save = (str(10 * (i + 1) + k) for k in range(5))
        inputs = {"model": ["1", 0], "image": ["2", 0], "question": QUESTION, "layers": ["3", 0]}
        inputs |= {"question_per_line": False, "prompt_style": "qa", **options}
        prompt[extract] = {"class_type": "VEAExtractAttention", "inputs": inputs}
        prompt[smooth] = {"class_type": "VEASmooth", "inputs": {"attention": [extract, 0], "sigma": 0.0}}
        prompt[norm] = {"class_type": "VEANormalize", "inputs": {"mask": [smooth, 0]}}
        prompt[image] = {"class_type": "MaskToImage", "inputs": {"mask": [norm, 0]}}
        prompt[save] = {"class_type": "SaveImage", "inputs": {"images": [image, 0], "filename_prefix": f"vea/{name}"}}
    return prompt


def _engine_levels(vlm, **options) -> np.ndarray:
    """What the prompt's saved image must hold: the engine's map, painted, min-max normalised, as 8-bit levels."""
    from vea_engine.attribution import paint_scores
    from vea_engine.mask import minmax_normalize
    from vea_engine.signals import attribute

    attention = attribute(vlm, [Image.open(IMAGE).convert("RGB")], QUESTION, LAYERS, **options)
    evidence = minmax_normalize(paint_scores(attention))[0].numpy()  # [H, W] in [0, 1]
    return np.clip(255.0 * evidence, 0, 255).astype(np.uint8)  # SaveImage's conversion


def test_each_signal_equals_the_engine(server, vlm_of):
    answer = server.queue(_prompt(CASES))
    assert answer["http_status"] == 200 and answer.get("node_errors") == {}, answer
    entry = server.wait(answer["prompt_id"], timeout=300)
    assert entry["status"]["status_str"] == "success", execution_error(entry) or server.log_tail()
    for i, (name, options) in enumerate(CASES.items()):
        saved = entry["outputs"][str(10 * (i + 1) + 4)]["images"][0]
        data = server.view(saved["filename"], saved.get("subfolder", ""), saved.get("type", "output"))
        got = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.int16)  # [H, W]
        expected = _engine_levels(vlm_of("qwen2_5_vl"), **options).astype(np.int16)
        assert got.shape == expected.shape, name
        assert got.min() == 0 and got.max() == 255, name  # a real map, min-max normalised
        assert np.abs(got - expected).max() <= 1, name


def test_bad_signal_is_refused_before_running(server):
    error = prompt_error(server, _prompt({"bad": {"signal": "saliency"}}))
    assert "saliency" in error and "attention" in error
