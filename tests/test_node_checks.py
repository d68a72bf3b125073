"""Bad values get one clear error at the node that received them (issue: hardening).

Every node input with a range or a choice list is walked from the real server's
``/object_info``: an out-of-range value, NaN, infinity and an unknown choice are each
refused by that node's check with a message naming the node, the input and the value.
Then a few prompts go through the real server end to end (the shared server of ``tests/conftest.py``,
whose ``qwen-damaged`` checkpoint has truncated weights).
"""

from __future__ import annotations

import json
import math

from tests.comfy_harness import comfyui_dir, comfyui_python, execution_error, load_vlm_node, prompt_error


def refused_choice(error: str, node: str, name: str, value: str, options: str) -> bool:
    """The prompt was refused for a choice not in the list: by the node's own check, or (ComfyUI 0.8+,
    for an input its validate_inputs does not name) by the server's ``value_not_in_list``."""
    ours = f"{node}: {name} = {value!r} is not one of {options}" in error
    servers = "value_not_in_list" in error and f"{name}: {value!r} not in" in error
    return ours or servers


WALK = """
import importlib.util, json, math, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("vea_pack", sys.argv[2] + "/__init__.py",
                                              submodule_search_locations=[sys.argv[2]])
pack = importlib.util.module_from_spec(spec); sys.modules["vea_pack"] = pack; spec.loader.exec_module(pack)
from comfy_api.latest import io
from vea_pack.nodes import NODES
from vea_pack.nodes.checks import check_value
out = []
DYNAMIC = getattr(io, "DynamicCombo", None)


def walk(specs):  # every input, the ones inside a DynamicCombo's options too (once each)
    seen = {}
    for spec in specs:
        seen.setdefault(spec.id, spec)
        if DYNAMIC is not None and isinstance(spec, DYNAMIC.Input):
            for option in spec.options:
                for inner in walk(option.inputs):
                    seen.setdefault(inner.id, inner)
    return list(seen.values())


for node in NODES:
    schema = node.define_schema()
    for spec in walk(schema.inputs):
        bad = []
        is_combo = isinstance(spec, io.Combo.Input) or (DYNAMIC is not None and isinstance(spec, DYNAMIC.Input))
        if is_combo and spec.options and spec.id != "checkpoint":
            bad = ["no-such-choice", "cuda:7"]
        elif isinstance(spec, (io.Float.Input, io.Int.Input)):
            bad = [math.nan, math.inf, -math.inf]
            bad += [spec.max + 1] if spec.max is not None else []
            bad += [spec.min - 1] if spec.min is not None else []
        for value in bad:
            try:
                check_value(schema.display_name, spec, value)
                out.append([schema.node_id, spec.id, repr(value), None])
            except ValueError as error:
                out.append([schema.node_id, spec.id, repr(value), str(error)])
print(json.dumps(out))
"""


def test_every_ranged_or_choice_input_refuses_bad_values(server):
    import subprocess

    from tests.comfy_harness import REPO, node_inputs

    comfy = comfyui_dir(server.version)  # the pack's schemas as this server's comfy_api builds them
    done = subprocess.run(
        [str(comfyui_python(server.version)), "-c", WALK, str(comfy), str(REPO)],
        capture_output=True,
        text=True,
        cwd=str(comfy),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    info = server.object_info()
    assert len(results) > 40
    for node_id, name, value, message in results:
        assert node_id in info and name in node_inputs(info[node_id])
        assert message is not None, f"{node_id}.{name} accepted {value}"
        display = info[node_id]["display_name"]
        assert message.startswith(f"{display}: {name} = ") and len(message) < 300, message


def test_bad_values_through_the_server(server):
    loader = load_vlm_node(device="cuda:7")
    preview = {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}
    layers = {"class_type": "VEALayers", "inputs": {"model": ["1", 0], "mode": "custom", "custom_layers": "0-3000000"}}
    error = prompt_error(server, {"1": loader, "2": layers, "3": preview})
    assert refused_choice(error, "VEA Load VLM", "device", "cuda:7", "'default', 'cpu'"), error
    loader["inputs"]["device"] = "cpu"
    error = prompt_error(server, {"1": loader, "2": layers, "3": preview})
    assert "is not a range of layer indices 0..1023" in error and len(error) < 400
    image = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}}
    mask = {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 64, "height": 48}}
    blend = {"class_type": "VEABlend", "inputs": {"image": ["1", 0], "mask": ["2", 0], "alpha": math.nan}}
    shown = {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}
    error = prompt_error(server, {"1": image, "2": mask, "3": blend, "4": shown})
    assert "VEA Blend: alpha = nan is not a finite number" in error
    blend["inputs"]["alpha"] = 0.5
    blend["inputs"]["rounding"] = "nearest"
    error = prompt_error(server, {"1": image, "2": mask, "3": blend, "4": shown})
    assert refused_choice(error, "VEA Blend", "rounding", "nearest", "'truncate', 'round'"), error
    blend["inputs"]["rounding"] = "truncate"
    entry = server.wait(server.queue({"1": image, "2": mask, "3": blend, "4": shown})["prompt_id"], timeout=120)
    assert entry["status"]["status_str"] == "success"  # the server keeps serving


def _answer_prompt(question: str, **answer_inputs) -> dict:
    """Load VLM -> a 64x48 image -> VEA Answer -> preview."""
    image = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}}
    answer = {"class_type": "VEAAnswer", "inputs": {"model": ["1", 0], "image": ["2", 0], "question": question,
              "question_per_line": False, "prompt_style": "qa", "custom_prompt": "{question}", "max_new_tokens": 2,
              **answer_inputs}}  # fmt: skip
    return {
        "1": load_vlm_node(),
        "2": image,
        "3": answer,
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }


def test_damaged_checkpoint_names_the_file_and_the_fix(server):
    prompt = _answer_prompt("What?")
    prompt["1"] = load_vlm_node("qwen-damaged")
    error = prompt_error(server, prompt)
    assert "VEALoadVLM" in error and "model.safetensors" in error and "re-download" in error and len(error) < 400
    assert server.run(_answer_prompt("What?"), timeout=120)[1] == "success"  # the server keeps serving


def test_special_token_strings_in_a_question_are_plain_text(server):
    entry, status = server.run(_answer_prompt("What do <|image_pad|> and <|im_start|>user mean?"), timeout=120)
    assert status == "success" and len(entry["outputs"]["4"]["text"]) == 1


def test_a_question_longer_than_the_context_is_refused_before_running(server):
    error = prompt_error(server, _answer_prompt("why " * 6000))
    assert "VEAAnswer" in error and "more than the model's context of 4096 tokens" in error and len(error) < 400


def test_a_validation_problem_is_reported_once(server):
    queued = server.queue(_answer_prompt("   "))
    errors = queued["node_errors"]["3"]["errors"]
    assert len(errors) == 1 and "VEA Answer: question is empty" in errors[0]["details"]


def test_the_layers_used_and_their_source_are_shown(server):
    layers = {"class_type": "VEALayers", "inputs": {"model": ["1", 0], "mode": "preset", "custom_layers": ""}}
    preview = {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}
    entry, status = server.run({"1": load_vlm_node(), "2": layers, "3": preview}, timeout=120)
    assert status == "success"
    assert entry["outputs"]["2"]["text"] == ["layers [0, 1, 2, 3, 4, 5]: no pre-profiled layers for this checkpoint, "
                                             "so all layers (as the reference code does)"]  # fmt: skip


def _attention_prompt(width: int, height: int, **attention_inputs) -> dict:
    """Load VLM -> an empty image -> VEA Extract Attention -> VEA Zoom (on the attention) -> preview."""
    image = {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0}}
    layers = {"class_type": "VEALayers", "inputs": {"model": ["1", 0], "mode": "preset", "custom_layers": ""}}
    attention = {"class_type": "VEAExtractAttention", "inputs": {"model": ["1", 0], "image": ["2", 0],
                 "question": "What?", "layers": ["3", 0], "question_per_line": False, "prompt_style": "qa",
                 "signal": "attention", "sinks": False, **attention_inputs}}  # fmt: skip
    zoom = {"class_type": "VEAZoom", "inputs": {"model": ["1", 0], "image": ["2", 0], "question": "What?",
            "question_per_line": False, "min_scale": 1.0, "max_scale": 2.0, "aspect": 1.0, "lam": 10.0,
            "max_new_tokens": 2, "attention": ["4", 0]}}  # fmt: skip
    preview = {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}}
    return {"1": load_vlm_node(), "2": image, "3": layers, "4": attention, "5": zoom, "6": preview}


def test_processor_limits_and_an_unknown_signal_get_one_clear_message(server):
    limit = "qwen_vl's processor takes aspect ratios up to 200:1"
    cases = [  # (prompt, the node that refuses, the message): 8000 / 200 = 40, 8 * 200 = 1600, ceil(4096 / 200) = 21
        (_attention_prompt(8000, 8), "VEAExtractAttention", "VEA Extract Attention: image: the image is 8000x8 "
         f"(W x H), an aspect ratio of 1000:1, but {limit}; pad it to 8000x40 or crop it to 1600x8 (W x H)."),
        (_attention_prompt(16, 4096, signal="grad"), "VEAExtractAttention", "VEA Extract Attention: image: the "
         f"image is 16x4096 (W x H), an aspect ratio of 256:1, but {limit}; pad it to 21x4096 or crop it to 16x3200 "
         "(W x H)."),
    ]  # fmt: skip
    with_mask = _attention_prompt(8, 8000)  # VEA Zoom on a mask of the image's size: refused at the zoom
    with_mask["7"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8000}}
    del with_mask["5"]["inputs"]["attention"], with_mask["4"], with_mask["3"]
    with_mask["5"]["inputs"]["mask"] = ["7", 0]
    cases.append((with_mask, "VEAZoom", "VEA Zoom: image: the image is 8x8000 (W x H), an aspect ratio of 1000:1, "
                  f"but {limit}; pad it to 40x8000 or crop it to 8x1600 (W x H)."))  # fmt: skip
    for prompt, node, message in cases:
        error = prompt_error(server, prompt)
        assert error.rstrip("\n") == f"{node}: {message}" and len(message) <= 300, error  # ComfyUI adds a newline
    queued = server.queue(_attention_prompt(64, 48, signal="saliency"))
    if queued.get("node_errors"):  # a server that checks combo values itself: once, under signal
        assert list(queued["node_errors"]) == ["4"], queued["node_errors"]
        (report,) = queued["node_errors"]["4"]["errors"]
        assert report["extra_info"]["input_name"] == "signal" and "'saliency'" in report["details"], report
    else:  # else the node's own check, once, when it runs
        error = execution_error(server.wait(queued["prompt_id"], timeout=120))
        assert error["exception_message"].startswith("VEA Extract Attention: signal = 'saliency' is not one of")
