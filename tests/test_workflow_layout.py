"""The shipped UI workflows are laid out to be read in the real front end at a laptop's window size.

Each workflow is loaded in the real ComfyUI front end (headless Chromium, 1600x1000) and
measured there: the node boxes are the front end's own (``node.getBounding()``, title bar
included), group membership is its own (``group.recomputeInsideNodes()``: the nodes whose
centre lies in the group) and the zoom is what "Zoom to fit" (``Comfy.Canvas.FitView``)
leaves in ``app.canvas.ds.scale``. The geometry is checked as loaded and again once every
image node shows an image (what a run does to SaveImage / PreviewImage).
"""

from __future__ import annotations

import json
from itertools import combinations

import pytest

from tests.comfy_frontend import (
    fit_view,
    graph_to_prompt,
    load_workflow,
    open_frontend,
    screenshot,
    settle,
    show_outputs,
)
from tests.comfy_harness import REPO, comparable_prompt, workflow_runs_on

pytestmark = [pytest.mark.comfy, pytest.mark.frontend]

WORKFLOWS = REPO / "workflows"
ARTIFACTS = REPO / "artifacts"
VIEWPORT = (1600, 1000)
MIN_ZOOM = 0.6  # the front end stops drawing text below ~0.57 (MinFontSizeForLOD 8 px / 14 px)
MIN_GAP = 10  # graph units between two node boxes: touching is not enough
STAGES = ["Load", "Attribute", "Mask", "Highlight", "Answer"]
GROUP_TITLES = {  # left to right (then top to bottom)
    "vea_basic": [f"{i}. {stage}" for i, stage in enumerate(STAGES, 1)],
    "vea_delegate": [f"{i}. {stage}" for i, stage in enumerate(STAGES, 1)],
    "vea_compare": ["1. Load", "2. VEA (all-in-one)", "3. Answer", "4. Highlight"],
    "vea_zoom": ["1. Load", "2. Attribute", "3. Zoom", "4. Answer"],
    "vea_boxes": ["1. Load", "2. Attribute", "3. Evidence boxes", "4. Boxes and crops"],
    "vea_sam3": ["1. Load", "2. Attribute", "3. Evidence boxes", "4. Draw (core)", "5. SAM 3 within the boxes (core)"],
}
# The executable nodes of each shipped graph (id -> class_type): the API prompts keep them.
EXECUTABLE = {
    "vea_basic": {
        "1": "PrimitiveStringMultiline",
        "2": "VEALoadVLM",
        "3": "LoadImage",
        "4": "VEALayers",
        "5": "VEAExtractAttention",
        "6": "VEADenoise",
        "7": "VEASmooth",
        "8": "VEANormalize",
        "9": "VEABlend",
        "10": "VEAAnswer",
        "11": "PreviewAny",
        "12": "SaveImage",
        "13": "PreviewImage",
    },
    "vea_delegate": {
        "1": "PrimitiveStringMultiline",
        "2": "VEALoadVLM",
        "3": "LoadImage",
        "4": "VEALoadVLM",
        "5": "VEALayers",
        "6": "VEAExtractAttention",
        "7": "VEADenoise",
        "8": "VEASmooth",
        "9": "VEANormalize",
        "10": "VEAAlignMask",
        "11": "VEABlend",
        "12": "VEAAnswer",
        "13": "PreviewAny",
        "14": "SaveImage",
    },
    "vea_compare": {
        "1": "PrimitiveStringMultiline",
        "2": "VEALoadVLM",
        "3": "LoadImage",
        "4": "VEAAllInOne",
        "5": "PreviewAny",
        "6": "PreviewAny",
        "7": "SaveImage",
        "8": "MaskToImage",
        "9": "PreviewImage",
    },
    "vea_zoom": {
        "1": "PrimitiveStringMultiline",
        "2": "VEALoadVLM",
        "3": "LoadImage",
        "4": "VEALayers",
        "5": "VEAExtractAttention",
        "6": "VEAZoom",
        "7": "PreviewAny",
        "8": "PreviewImage",
        "9": "PreviewAny",
    },
    "vea_boxes": {
        "1": "PrimitiveStringMultiline",
        "2": "VEALoadVLM",
        "3": "LoadImage",
        "4": "VEALayers",
        "5": "VEAExtractAttention",
        "6": "VEAEvidenceBoxes",
        "7": "SaveImage",
        "8": "PreviewImage",
        "9": "PreviewAny",
        "10": "MaskToImage",
        "11": "PreviewImage",
    },
    "vea_sam3": {
        "1": "PrimitiveStringMultiline",
        "2": "VEALoadVLM",
        "3": "LoadImage",
        "4": "VEALayers",
        "5": "VEAExtractAttention",
        "6": "VEAEvidenceBoxes",
        "7": "DrawBBoxes",
        "8": "SaveImage",
        "9": "CheckpointLoaderSimple",
        "10": "SAM3_Detect",
        "11": "MaskToImage",
        "12": "PreviewImage",
    },
}
NAMES = tuple(EXECUTABLE)
NOTE_TYPES = ("Note", "MarkdownNote")

GEOMETRY_JS = """() => {
  const graph = window.app.graph;
  for (const group of graph._groups) group.recomputeInsideNodes();
  const links = [];
  for (const node of graph._nodes) {
    for (const input of node.inputs || []) {
      if (input.link == null) continue;
      const link = graph.getLink ? graph.getLink(input.link) : graph.links[input.link];
      links.push([link.origin_id, link.target_id]);
    }
  }
  return {
    nodes: graph._nodes.map(n => ({
      id: n.id, type: n.type, title: n.title, virtual: !!n.isVirtualNode,
      box: Array.from(n.getBounding()), text: n.widgets && n.widgets.length ? n.widgets[0].value : null,
    })),
    groups: graph._groups.map(g => ({
      title: g.title, box: Array.from(g._bounding), titleHeight: g.titleHeight, nodes: g._nodes.map(n => n.id),
    })),
    links,
  };
}"""


@pytest.fixture(scope="module")
def measured(server):
    """Per workflow the server's ComfyUI runs: the shipped UI and API JSON, the geometry as loaded and with
    images shown, the fit. (An older front end only names the core nodes of a newer workflow missing:
    tests/test_comfy_nodes.py.)"""
    ARTIFACTS.mkdir(exist_ok=True)
    found = {}
    version = server.version
    info = server.object_info()
    with open_frontend(server, viewport=VIEWPORT) as page:
        for name in (n for n in NAMES if workflow_runs_on(n, version)):
            ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
            assert load_workflow(page, ui) == [], name
            settle(page, ["LoadImage"])
            loaded = page.evaluate(GEOMETRY_JS)
            fit = fit_view(page)
            screenshot(page, ARTIFACTS / f"layout_{name}-{version}.png")
            prompt = graph_to_prompt(page)
            show_outputs(page, "vea_example.png")
            shown = page.evaluate(GEOMETRY_JS)
            screenshot(page, ARTIFACTS / f"layout_{name}_with_outputs-{version}.png")
            found[name] = {
                "ui": ui,
                "api": json.loads((WORKFLOWS / "api" / f"{name}.json").read_text()),
                "prompt": prompt,
                "geometry": {"loaded": loaded, "images shown": shown},
                "fit": fit,
                "info": info,
            }
    return found


# ---- geometry helpers (boxes are [x, y, w, h] in graph units) ---------------------------------------------
def _grow(box, by):
    return [box[0] - by, box[1] - by, box[2] + 2 * by, box[3] + 2 * by]


def _intersect(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _inside(inner, outer, top_margin=0.0) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1] + top_margin
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def _label(node) -> str:
    return f"#{node['id']} {node['title'] or node['type']}"


# ---- the tests ------------------------------------------------------------------------------------------
@pytest.fixture
def shipped(measured, name):
    """The measurements of workflow ``name`` (a test parameter), where the server's ComfyUI runs it."""
    if name not in measured:
        pytest.skip(f"{name} uses core nodes this ComfyUI lacks")
    return measured[name]


def test_fitted_zoom_keeps_text_drawn(measured):
    zooms = {name: round(m["fit"]["scale"], 3) for name, m in measured.items()}
    for name, m in measured.items():
        assert m["fit"]["scale"] >= MIN_ZOOM, f"{name} fits {VIEWPORT} only at zoom {zooms[name]}: {zooms}"
        assert m["fit"]["lowQuality"] is False, f"{name}: the front end draws boxes without text at {zooms[name]}"


@pytest.mark.parametrize("state", ["loaded", "images shown"])
@pytest.mark.parametrize("name", NAMES)
def test_no_two_nodes_overlap(shipped, name, state):
    nodes = shipped["geometry"][state]["nodes"]
    assert len(nodes) == len(shipped["ui"]["nodes"])
    clashes = [
        f"{_label(a)} {a['box']} and {_label(b)} {b['box']}"
        for a, b in combinations(nodes, 2)
        if _intersect(_grow(a["box"], MIN_GAP / 2), _grow(b["box"], MIN_GAP / 2))
    ]
    assert clashes == [], f"{name} ({state}): nodes closer than {MIN_GAP} units: {clashes}"


@pytest.mark.parametrize("state", ["loaded", "images shown"])
@pytest.mark.parametrize("name", NAMES)
def test_every_group_holds_its_nodes(shipped, name, state):
    geometry = shipped["geometry"][state]
    groups, nodes = geometry["groups"], geometry["nodes"]
    by_position = sorted(groups, key=lambda g: (g["box"][0], g["box"][1]))
    assert [g["title"] for g in by_position] == GROUP_TITLES[name]
    for a, b in combinations(groups, 2):
        assert not _intersect(a["box"], b["box"]), f"{name}: groups {a['title']!r} and {b['title']!r} overlap"
    for group in groups:
        assert group["nodes"], f"{name}: group {group['title']!r} is empty"
        for node in nodes:
            if node["id"] in group["nodes"]:  # the front end counts it in (its centre lies inside)
                assert _inside(node["box"], group["box"], group["titleHeight"]), (
                    f"{name} ({state}): {_label(node)} {node['box']} sticks out of {group['title']!r} {group['box']}"
                )
            else:
                assert not _intersect(node["box"], group["box"]), (
                    f"{name} ({state}): {_label(node)} {node['box']} reaches into {group['title']!r} {group['box']}"
                )
    for node in nodes:
        homes = [g["title"] for g in groups if node["id"] in g["nodes"]]
        if node["type"] in NOTE_TYPES:
            assert homes == [], f"{name}: the Note lies in {homes}"
        else:
            assert len(homes) == 1, f"{name}: {_label(node)} is in {len(homes)} groups: {homes}"


@pytest.mark.parametrize("name", NAMES)
def test_links_run_left_to_right(shipped, name):
    """Between groups a link goes from a node to one wholly right of it; inside a group never up or back."""
    geometry = shipped["geometry"]["loaded"]
    box = {n["id"]: n["box"] for n in geometry["nodes"]}
    home = {nid: g["title"] for g in geometry["groups"] for nid in g["nodes"]}
    backwards = []
    for origin, target in geometry["links"]:
        a, b = box[origin], box[target]
        rightwards = a[0] + a[2] < b[0]
        downwards = a[1] + a[3] < b[1] and a[0] <= b[0]
        same_group = home.get(origin, "none") == home.get(target)
        if not (rightwards or (same_group and downwards)):
            backwards.append(f"#{origin} -> #{target}")
    assert backwards == [], f"{name}: links that run back: {backwards}"
    across = sum(home.get(o) != home.get(t) for o, t in geometry["links"])
    assert across >= len(geometry["links"]) / 2, f"{name}: most links should join one stage to the next"


@pytest.mark.parametrize("name", NAMES)
def test_note_says_what_and_where_and_stays_out_of_the_api_prompt(shipped, name):
    m = shipped
    notes = [n for n in m["ui"]["nodes"] if n["type"] in NOTE_TYPES]
    assert len(notes) == 1, f"{name}: {len(notes)} notes"
    loaded = [n for n in m["geometry"]["loaded"]["nodes"] if n["type"] in NOTE_TYPES]
    assert len(loaded) == 1 and loaded[0]["virtual"], f"{name}: the front end does not treat the Note as UI-only"
    text = loaded[0]["text"]
    assert text == notes[0]["widgets_values"][0]
    assert "ComfyUI/models/VLM/<checkpoint folder>" in text and "ComfyUI/input/" in text, text
    assert "vea_example.png" in text, text
    for node in m["ui"]["nodes"]:
        if node["type"] == "VEALoadVLM":
            assert f"ComfyUI/models/VLM/{node['widgets_values'][0]}" in text, (name, node["widgets_values"][0])

    # the API prompt has the executable nodes only: the shipped one, and the one the front end converts
    ui_executable = {str(n["id"]): n["type"] for n in m["ui"]["nodes"] if n["type"] not in NOTE_TYPES}
    assert {k: v["class_type"] for k, v in m["api"].items()} == EXECUTABLE[name] == ui_executable
    assert {k: v["class_type"] for k, v in m["prompt"].items()} == EXECUTABLE[name]
    # compared in the flat layout, without PreviewAny's display widgets (see comparable_prompt)
    assert comparable_prompt(m["info"], m["prompt"], m["api"]) == comparable_prompt(m["info"], m["api"], m["api"])
