"""Inputs that only one option of a combo uses are shown only for that option (ComfyUI 0.8+), and
every ComfyUI version hands the node the same values.

* ComfyUI 0.33.0 (``io.DynamicCombo``): in the real front end, ``hub_id`` appears only for
  checkpoint ``(use hub_id)``, ``custom_layers`` / ``profile_path`` only in their layer modes,
  ``custom_prompt`` only for prompt style ``custom``, and each disappears again.
* ComfyUI 0.3.75 (no DynamicCombo): the flat layout, every input always shown, the dependent
  ones after all others (so a workflow saved in a mode that does not use them loads on both
  layouts: the front end restores widget values by position).
* Both: prompts for every mode run through the server, and the node's output shows it received
  the values (layers listed, errors echoing the value). Every shipped UI workflow converts to the
  shipped API prompt once 0.33.0's nested keys are written flat (``test_workflow_layout.py``); the
  shipped API prompts run on both versions in ``test_comfy_nodes.py`` and ``test_evidence_nodes.py``.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.comfy_harness import REPO, execution_error

pytestmark = pytest.mark.comfy

DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
WORKFLOWS = REPO / "workflows"
QWEN = "Qwen2.5-VL-7B-Instruct"
HUB = "(use hub_id)"
ALL_LAYERS = "layers [0, 1, 2, 3, 4, 5]"  # the tiny Qwen2.5-VL has 6 decoder layers

# node -> (combo, {option: the inputs only that option shows})
DEPENDENTS = {
    "VEALoadVLM": ("checkpoint", {HUB: ["hub_id"]}),
    "VEALayers": ("mode", {"custom": ["custom_layers"], "profile": ["profile_path"]}),
    "VEAAnswer": ("prompt_style", {"custom": ["custom_prompt"]}),
    "VEAAllInOne": ("layers", {"custom": ["custom_layers"]}),
}
WIDGETS = {  # every widget but the dependent ones, in order
    "VEALoadVLM": [
        "checkpoint",
        "dtype",
        "device",
        "attention",
        "resolution",
        "max_pixels",
        "max_memory",
        "quantization",
    ],
    "VEALayers": ["mode"],
    "VEAAnswer": ["question", "question_per_line", "prompt_style", "max_new_tokens"],
    "VEAAllInOne": [
        "question",
        "question_per_line",
        "layers",
        "lam",
        "sigma",
        "alpha",
        "max_new_tokens",
        "signal",
        "sinks",
    ],
}


@pytest.fixture(scope="module")
def served(server):
    """``(version, server)``: the shared server (the tiny Qwen2.5-VL / LLaVA under the shipped workflows'
    names, the example image in input/, hub access off), with a layer profile in output/vea/."""
    from vea_engine.profiling import LayerProfile

    (server.output_dir / "vea").mkdir(exist_ok=True)
    LayerProfile(QWEN, 6, (1, 4), (0.5,) * 6, (0.5,) * 6, (0.5,) * 6, 3, 0).to_json(
        server.output_dir / "vea" / "profile.json"
    )
    return server.version, server


@pytest.fixture(scope="module")
def page(served):
    """The real front end of ``served``, one browser per server."""
    from tests.comfy_frontend import open_frontend

    with open_frontend(served[1]) as opened:
        yield opened


def _dynamic(version: str) -> bool:
    return version != "0.3.75"


# ---- the real front end --------------------------------------------------------------------------
_WIDGETS_JS = """([type, combo, option]) => {
  let node = window.app.graph._nodes.find(n => n.type === type);
  if (!node) { node = window.LiteGraph.createNode(type); window.app.graph.add(node); }
  const widget = node.widgets.find(w => w.name === combo);
  if (option !== null) widget.value = option;
  return {names: node.widgets.map(w => w.name), options: widget.options.values};
}"""


@pytest.mark.frontend
def test_dependent_widgets_follow_the_combo_in_the_front_end(served, page):
    version, _server = served
    page.evaluate("() => window.app.graph.clear()")
    for node, (combo, shows) in DEPENDENTS.items():
        base = WIDGETS[node]
        fresh = page.evaluate(_WIDGETS_JS, [node, combo, None])
        options = fresh["options"]
        assert set(shows) <= set(options), (node, options)
        dependents = [name for names in shows.values() for name in names]
        if _dynamic(version):
            assert fresh["names"] == base, (node, fresh)  # a new node: the first option's layout
            for option in [*options, options[0]]:  # every option, then back to the first
                names = page.evaluate(_WIDGETS_JS, [node, combo, option])["names"]
                at = base.index(combo) + 1
                shown = [f"{combo}.{name}" for name in shows.get(option, [])]
                assert names == base[:at] + shown + base[at:], (node, option, names)
        else:
            flat = base + list(dict.fromkeys(dependents))  # all of them, always, after the others
            for option in options:
                assert page.evaluate(_WIDGETS_JS, [node, combo, option])["names"] == flat, (node, option)


def _workflow_prompt(page, edits: dict[str, dict]) -> dict:
    """Set widgets of the loaded graph (``{node type: {widget: value}}``, combos first), as a user
    would, and return the front end's API prompt."""
    page.evaluate(
        """(edits) => {
          for (const [type, values] of Object.entries(edits)) {
            const node = window.app.graph._nodes.find(n => n.type === type);
            for (const [name, value] of Object.entries(values)) {
              node.widgets.find(w => w.name === name).value = value;
            }
          }
        }""",
        edits,
    )
    from tests.comfy_frontend import graph_to_prompt

    return graph_to_prompt(page)


@pytest.mark.frontend
def test_values_typed_in_a_dependent_widget_reach_the_node(served, page):
    from tests.comfy_frontend import load_workflow

    version, server = served
    nested = _dynamic(version)
    layers_key = "mode.custom_layers" if nested else "custom_layers"
    prompt_key = "prompt_style.custom_prompt" if nested else "custom_prompt"
    assert load_workflow(page, json.loads((WORKFLOWS / "vea_basic.json").read_text())) == []
    prompt = _workflow_prompt(
        page,
        {
            "VEALayers": {"mode": "custom", layers_key: "1,3"},
            "VEAAnswer": {"prompt_style": "custom", prompt_key: "Briefly: {question}", "max_new_tokens": 2},
        },
    )
    by_type = {node["class_type"]: (key, node) for key, node in prompt.items()}
    assert by_type["VEALayers"][1]["inputs"][layers_key] == "1,3"
    entry, status = server.run(prompt, timeout=180)
    assert status == "success", execution_error(entry) or server.log_tail()
    assert entry["outputs"][by_type["VEALayers"][0]]["text"][0].startswith("layers [1, 3]")

    prompt = _workflow_prompt(page, {"VEAAnswer": {prompt_key: "no placeholder"}})
    entry, status = server.run(prompt, timeout=180)
    assert status == "error" and "no '{question}' placeholder" in execution_error(entry)["exception_message"]


# ---- every mode through the server API -----------------------------------------------------------
def _loader(**inputs) -> dict:
    base = {"checkpoint": QWEN, "dtype": "auto", "device": "default", "attention": "sdpa"}
    return {"class_type": "VEALoadVLM", "inputs": {**base, **inputs}}


def _image() -> dict:
    return {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}}


def _layers_prompt(**inputs) -> tuple[dict, str]:
    shown = {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}
    return {"1": _loader(), "2": {"class_type": "VEALayers", "inputs": {"model": ["1", 0], **inputs}}, "3": shown}, "2"


def _answer_prompt(**inputs) -> tuple[dict, str]:
    answer = {"model": ["1", 0], "image": ["2", 0], "question": "What?", "question_per_line": False,
              "max_new_tokens": 1, **inputs}  # fmt: skip
    return {"1": _loader(), "2": _image(), "3": {"class_type": "VEAAnswer", "inputs": answer}}, "3"


def _all_in_one_prompt(**inputs) -> tuple[dict, str]:
    node = {"model": ["1", 0], "image": ["2", 0], "question": "What?", "question_per_line": False,
            "lam": 10.0, "sigma": 0.5, "alpha": 0.5, "max_new_tokens": 1, **inputs}  # fmt: skip
    return {"1": _loader(), "2": _image(), "3": {"class_type": "VEAAllInOne", "inputs": node}}, "3"


def _loader_prompt(**inputs) -> tuple[dict, str]:
    prompt, _ = _answer_prompt(prompt_style="qa")
    prompt["1"] = _loader(**inputs)
    return prompt, "1"


# (prompt maker, inputs in the flat form, what the node shows: "text:<start of its text>" or "error:<pattern>")
MODES = [
    (_layers_prompt, {"mode": "preset"}, "text:" + ALL_LAYERS),
    (_layers_prompt, {"mode": "custom", "custom_layers": "1,3"}, "text:layers [1, 3]"),
    (_layers_prompt, {"mode": "custom", "custom_layers": "9"}, r"error:layer\(s\) \[9\] out of range"),
    (_layers_prompt, {"mode": "profile", "profile_path": "vea/profile.json"}, "text:layers [1, 4]"),
    (_layers_prompt, {"mode": "profile", "profile_path": "vea/gone.json"}, "error:profile_path 'vea/gone.json'"),
    (_layers_prompt, {"mode": "preset", "custom_layers": "9", "profile_path": "x"}, "text:" + ALL_LAYERS),
    (_layers_prompt, {"mode": "bogus"}, "error:VEA Layers: mode = 'bogus' is not one of 'preset', 'all'"),
    (_answer_prompt, {"prompt_style": "custom", "custom_prompt": "{question}?"}, "text:"),
    (_answer_prompt, {"prompt_style": "custom", "custom_prompt": "Hi"}, r"error:no '\{question\}' placeholder"),
    (_answer_prompt, {"prompt_style": "custom"}, "text:"),  # the default template
    (_all_in_one_prompt, {"layers": "custom", "custom_layers": "0,2"}, "layers_used:layers [0, 2]"),
    (_loader_prompt, {"checkpoint": HUB, "hub_id": ""}, "error:hub_id is empty"),
    (_loader_prompt, {"checkpoint": HUB, "hub_id": "vea-test/none"}, "error:cannot read the config of 'vea-test/none'"),
    (_loader_prompt, {"checkpoint": QWEN, "hub_id": "vea-test/none"}, "text:"),  # hub_id unused: the folder loads
]


def _nested(prompt: dict, node_id: str) -> dict:
    """The same prompt with the chosen option's inputs written as the 0.33.0 front end sends them."""
    node = prompt[node_id]
    combo, shows = DEPENDENTS[node["class_type"]]
    chosen = node["inputs"][combo]
    for name in [n for names in shows.values() for n in names]:
        if name in node["inputs"]:
            value = node["inputs"].pop(name)
            if name in shows.get(chosen, []):
                node["inputs"][f"{combo}.{name}"] = value
    return prompt


def _outcome(server, prompt: dict, node_id: str, expected: str) -> None:
    """Run ``prompt``; node ``node_id`` must fail with ``error:<pattern>``, or succeed and show a
    text starting ``text:<start>`` (its first line; ``layers_used:``: its last line)."""
    kind, want = expected.split(":", 1)
    queued = server.queue(prompt)
    assert queued.get("node_errors") == {}, queued
    entry = server.wait(queued["prompt_id"], timeout=180)
    error = execution_error(entry)
    if kind == "error":
        assert error is not None and re.search(want, error["exception_message"]), error
        return
    assert error is None and entry["status"]["status_str"] == "success", error
    if want:
        lines = entry["outputs"][node_id]["text"]
        assert (lines[0] if kind == "text" else lines[-1]).startswith(want), lines


def test_every_mode_reaches_the_node_in_the_flat_form(served):
    """The flat form (every input under its own name) is the API form that runs on both versions."""
    _version, server = served
    for make, inputs, expected in MODES:
        prompt, node_id = make(**inputs)
        _outcome(server, prompt, node_id, expected)


def test_every_mode_reaches_the_node_in_the_nested_form(served):
    """The 0.33.0 front end's form (``"mode.custom_layers"``), and a nested value wins over a flat one."""
    version, server = served
    if not _dynamic(version):
        pytest.skip("ComfyUI 0.3.75 has no DynamicCombo: its prompts are flat")
    info = server.object_info()
    assert all(info[node]["input"]["required"][combo][0] == DYNAMIC_COMBO for node, (combo, _) in DEPENDENTS.items())
    for make, inputs, expected in MODES:
        prompt, node_id = make(**inputs)
        _outcome(server, _nested(prompt, node_id), node_id, expected)
    prompt, node_id = _layers_prompt(mode="custom", custom_layers="1,3")
    prompt[node_id]["inputs"]["mode.custom_layers"] = "2"
    _outcome(server, prompt, node_id, "text:layers [2]")
