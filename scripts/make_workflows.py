"""Generate the shipped workflows (UI format + API format) from one description each.

Both formats are derived from the same graph below and from the live node
definitions of a real ComfyUI server (``/object_info``: widget order, socket
types), so they cannot drift apart. The UI layout is computed, not hand-placed:
each graph names its groups (load, attribute, mask, highlight, answer) as columns of
nodes; the node sizes are measured in the real front end of every installed ComfyUI
version (with every image shown, as after a run; the largest of each node counts), then
the groups are laid out left to right, the nodes stacked in their columns, and a Note (a
front-end-only node, absent from the API format) saying what the graph does and where
models and image go is placed below groups where no link runs.
Each graph fits a 1600x1000 window at a zoom where the front end still draws text
(``tests/test_workflow_layout.py`` checks that, and that nothing overlaps).
Thumbnails are screenshots of each UI workflow loaded in the real front end.

One pair of files serves every ComfyUI version: both are written in the flat layout (where a
combo's dependent inputs, e.g. ``custom_prompt``, are inputs of their own after all others;
:func:`_input_specs` reads a DynamicCombo of ComfyUI 0.8+ that way). The 0.8+ front end
restores widget values by position and ignores the trailing ones its option does not show;
the API prompt names every input flat, which every version runs.

A graph that uses core nodes newer than 0.3.75 (``Graph.comfy``, e.g. ``vea_sam3``: ComfyUI 0.33's
bounding-box nodes) is written from that version's server and measured on the versions that run it.

Run: ``.venv/bin/python scripts/make_workflows.py [name ...]`` (needs ``scripts/install_comfyui.sh``;
no name: every workflow).
Writes ``workflows/<name>.json`` (UI, served by ComfyUI's template browser),
``workflows/<name>.jpg`` (thumbnail), ``workflows/api/<name>.json`` (for POST /prompt)
and ``workflows/vea_example.png`` (the example image the workflows load).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from workflow_graphs import COL_GAP, EXAMPLE_IMAGE, GRAPHS, LLAVA, QWEN, SAM3, Graph, Group, Node

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"

# Layout, in graph units (the front end's LiteGraph constants where they exist).
VIEWPORT = (1600, 1000)  # a common laptop window; the fitted zoom must keep text drawn (>= 0.6) there
NODE_TITLE = 30  # LiteGraph.NODE_TITLE_HEIGHT: a node's title bar sits above its pos
GROUP_TITLE = 34  # a group's title bar: font_size 24 * 1.4
PAD = 14  # group border to its nodes
GAP_Y = 26  # between stacked nodes
GROUP_GAP = 40  # between groups
GROUP_GAP_Y = 30  # between stacked groups
NOTE_GAP = 30  # between the groups and the Note below them
NOTE_MIN_HEIGHT = 96
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # /object_info type of io.DynamicCombo (ComfyUI 0.8+)


def _is_widget(spec) -> bool:
    kind = spec[0]
    forced = len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("forceInput")  # a socket, e.g. SAM 3's
    return not forced and (isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"))


def _input_specs(info: dict) -> list[tuple[str, list]]:
    """``(name, spec)`` of a node's inputs in the flat layout, on any server.

    A DynamicCombo (ComfyUI 0.8+) becomes a plain combo in place and the inputs of its options
    come after every other input, once each, as the pack lays them out where the server has no
    DynamicCombo: the workflows are written in the form that loads on both.
    """
    order = info.get("input_order", {})
    specs, trailing = [], {}
    for section in ("required", "optional"):
        defined = info["input"].get(section, {})
        for name in order.get(section, list(defined)):
            spec = defined[name]
            if spec[0] == DYNAMIC_COMBO:
                keys = [option["key"] for option in spec[1]["options"]]
                specs.append((name, ["COMBO", {"options": keys, "default": keys[0]}]))
                for option in spec[1]["options"]:
                    for inner in ("required", "optional"):
                        trailing.update((option["inputs"].get(inner) or {}).items())
            else:
                specs.append((name, spec))
    return specs + list(trailing.items())


def _output_index(info: dict, name: str) -> int:
    names = info.get("output_name") or info["output"]
    if name in names:
        return list(names).index(name)
    return list(info["output"]).index(name)


def _default(spec) -> object:
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(spec[0], list):
        return spec[0][0] if spec[0] else ""  # an empty choice list: e.g. no checkpoint installed
    if spec[0] == "COMBO":
        return options.get("default", (options.get("options") or [""])[0])
    return options.get("default", {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(spec[0]))


def api_prompt(nodes: list[Node], object_info: dict) -> dict:
    """API format: ``{id: {"class_type", "inputs"}}`` with every widget value spelled out."""
    by_id = {n.id: n for n in nodes}
    prompt = {}
    for node in nodes:
        info = object_info[node.type]
        inputs = {}
        for name, spec in _input_specs(info):
            if name in node.links:
                src, out = node.links[name]
                inputs[name] = [str(src), _output_index(object_info[by_id[src].type], out)]
            elif _is_widget(spec):
                inputs[name] = node.widgets.get(name, _default(spec))
        prompt[str(node.id)] = {
            "class_type": node.type,
            "inputs": inputs,
            "_meta": {"title": node.title or info.get("display_name", node.type)},
        }
    return prompt


def layout(graph: Graph, sizes: dict[int, list[int]]) -> tuple[list[list[int]], list[int]]:
    """Place the nodes (sets ``pos`` and ``size``); returns the group boundings and the Note's ``[x, y, w, h]``.

    ``sizes``: node id -> ``[w, h]`` as the front end sizes the node (without its title bar).
    Stacks of groups go left to right, all starting at the top; in a group, columns go left
    to right and nodes top to bottom. The one-group stacks right of Load end at one height;
    the Note spans the stacks ``graph.note_under`` names, below them.
    """
    by_id = {n.id: n for n in graph.nodes}

    def height(nid: int) -> int:  # with the title bar
        return sizes[nid][1] + NODE_TITLE

    def col_width(col: list[int]) -> int:
        return max(sizes[nid][0] for nid in col)

    def place(group: Group, x: int, top: int) -> int:
        """Place the group's nodes with its top-left at (x, top); returns the group's height."""
        cx, bottom = x + PAD, 0
        for col in group.columns:
            y = top + GROUP_TITLE + PAD
            for nid in col:
                by_id[nid].pos, by_id[nid].size = (cx, y + NODE_TITLE), tuple(sizes[nid])
                y += height(nid) + GAP_Y
            bottom = max(bottom, y - GAP_Y)
            cx += col_width(col) + COL_GAP
        return bottom + PAD - top

    boundings, stacks, x = [], [], 0  # stacks: (left, right, its groups' boundings)
    for stack in graph.stacks:
        width = max(2 * PAD + sum(map(col_width, g.columns)) + COL_GAP * (len(g.columns) - 1) for g in stack)
        y, own = 0, []
        for group in stack:
            own.append([x, y, width, place(group, x, y)])
            y += own[-1][3] + GROUP_GAP_Y
        boundings += own
        stacks.append((x, x + width, own))
        x += width + GROUP_GAP
    singles = [own[0] for _, _, own in stacks[1:] if len(own) == 1]
    tallest = max((b[3] for b in singles), default=0)
    for bounding in singles:  # one-group stacks right of Load end at one height
        bounding[3] = tallest
    first, last = graph.note_under
    below = stacks[first : last % len(stacks) + 1]
    note_x, note_y = below[0][0], max(b[1] + b[3] for _, _, own in below for b in own)
    note_w = below[-1][1] - note_x
    return boundings, [note_x, note_y + NOTE_GAP + NODE_TITLE, note_w, _note_height(graph.note, note_w)]


def _note_height(text: str, width: int) -> int:
    """Room for ``text`` in a Note of ``width`` (its textarea: ~7 px a character, ~15 px a line)."""
    per_line = max(1, (width - 20) // 7)
    lines = sum(max(1, -(-len(par) // per_line)) for par in text.split("\n"))
    return max(NOTE_MIN_HEIGHT, 15 * lines + 24)


def ui_workflow(graph: Graph, object_info: dict, boundings=None, note_rect=None) -> dict:
    """UI format (nodes, links, groups and the Note) as the front end saves it."""
    nodes = graph.nodes
    by_id = {n.id: n for n in nodes}
    links, out_links = [], {}
    for node in nodes:
        info = object_info[node.type]
        slot = 0
        for name, spec in _input_specs(info):
            if name in node.links or not _is_widget(spec):
                if name in node.links:
                    src, out = node.links[name]
                    out_index = _output_index(object_info[by_id[src].type], out)
                    link_id = len(links) + 1
                    type_ = object_info[by_id[src].type]["output"][out_index]
                    links.append([link_id, src, out_index, node.id, slot, type_])
                    out_links.setdefault((src, out_index), []).append(link_id)
                slot += 1
    ui_nodes = []
    link_of = {(link[3], link[4]): link[0] for link in links}
    for order, node in enumerate(nodes):
        info = object_info[node.type]
        inputs, widgets, slot = [], [], 0
        for name, spec in _input_specs(info):
            widget = _is_widget(spec)
            if name in node.links or not widget:
                entry = {
                    "name": name,
                    "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                    "link": link_of.get((node.id, slot)),
                }
                if widget:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
                slot += 1
            if widget:
                widgets.append(node.widgets.get(name, _default(spec)))
                if len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("image_upload"):
                    widgets.append("image")
        outputs = [
            {
                "name": (info.get("output_name") or info["output"])[i],
                "type": t,
                "links": out_links.get((node.id, i), []),
                "slot_index": i,
            }
            for i, t in enumerate(info["output"])
        ]
        entry = {
            "id": node.id,
            "type": node.type,
            "pos": list(node.pos),
            "size": list(node.size or (node.width, 0)),
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": inputs,
            "outputs": outputs,
            "properties": {"Node name for S&R": node.type},
            "widgets_values": widgets,
        }
        if node.title:
            entry["title"] = node.title
        ui_nodes.append(entry)
    note_id = max(n.id for n in nodes) + 1  # the executable nodes keep their ids (and the API prompt its keys)
    if note_rect is not None:
        # "Note" is a front-end node (virtual: app.graphToPrompt leaves it out of the API prompt)
        ui_nodes.append(
            {
                "id": note_id,
                "type": "Note",
                "pos": note_rect[:2],
                "size": note_rect[2:],
                "flags": {},
                "order": len(nodes),
                "mode": 0,
                "inputs": [],
                "outputs": [],
                "title": "About this workflow",
                "properties": {},
                "widgets_values": [graph.note],
                "color": "#432",
                "bgcolor": "#653",
            }
        )
    groups = [
        {"id": i + 1, "title": g.title, "bounding": b, "color": g.color, "font_size": 24, "flags": {}}
        for i, (g, b) in enumerate(zip(graph.groups, boundings or [], strict=False))
    ]
    return {
        "last_node_id": note_id if note_rect is not None else note_id - 1,
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def measure(page, graph: Graph, info: dict) -> dict[int, list[int]]:
    """Node id -> ``[w, h]``: the real front end's size of each node at its width, with its images shown."""
    from tests.comfy_frontend import load_workflow, settle, show_outputs

    for i, node in enumerate(graph.nodes):
        node.pos, node.size = (400 * i, 100), None
    missing = load_workflow(page, ui_workflow(graph, info))
    if missing:
        raise RuntimeError(f"the front end reports missing nodes {missing}")
    settle(page)
    return show_outputs(page, EXAMPLE_IMAGE)


# The part of the page where the canvas is not covered by menus and panels (left, top, right, bottom).
CLEAR = (70, 140, VIEWPORT[0] - 10, VIEWPORT[1] - 60)
VIEW_JS = """([scale, offset]) => {
  const ds = window.app.canvas.ds;
  ds.scale = scale;
  ds.offset = offset;
  window.app.canvas.setDirty(true, true);
}"""


def thumbnail(page, path: Path, bounds: list[float]) -> None:
    """A JPEG of the graph (``bounds``: x, y, w, h in graph units) drawn as large as the clear canvas allows."""
    from PIL import Image

    from tests.comfy_frontend import screenshot

    left, top, right, bottom = CLEAR
    scale = min((right - left) / bounds[2], (bottom - top) / bounds[3], 1.0)
    x0 = left + ((right - left) - bounds[2] * scale) / 2  # screen = (graph + offset) * scale
    y0 = top + ((bottom - top) - bounds[3] * scale) / 2
    page.evaluate(VIEW_JS, [scale, [x0 / scale - bounds[0], y0 / scale - bounds[1]]])
    png = path.with_suffix(".png")
    screenshot(page, png)
    margin = 8
    box = (x0 - margin, y0 - margin, x0 + bounds[2] * scale + margin, y0 + bounds[3] * scale + margin)
    shot = Image.open(png).convert("RGB").crop(tuple(round(v) for v in box))
    shot.thumbnail((960, 640), Image.Resampling.LANCZOS)
    shot.save(path, quality=88)
    png.unlink()


# neither the minimap nor the canvas info (bottom corners) in the thumbnails
SETTINGS = {"Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False}


def _started(server) -> dict:
    """Put the example image into ``server``'s input folder; its ``/object_info``, with a checkpoint
    combo that accepts the names the workflows use."""
    (server.input_dir / EXAMPLE_IMAGE).write_bytes((WORKFLOWS / EXAMPLE_IMAGE).read_bytes())
    info = server.object_info()
    checkpoint = info["VEALoadVLM"]["input"]["required"]["checkpoint"]
    for vlm in (QWEN, LLAVA):
        dynamic = checkpoint[0] == DYNAMIC_COMBO
        checkpoint[1]["options"].append({"key": vlm, "inputs": {"required": {}}} if dynamic else vlm)
    return info


def placeholder_models() -> dict[str, Path]:
    """``{"checkpoints/<SAM 3 file>": an empty file}``: core loaders (V1 combos) offer only files that exist, and
    the front end flags a node whose file is not offered; the graphs are laid out without the weights."""
    import tempfile

    empty = Path(tempfile.mkdtemp(prefix="vea-placeholder-")) / SAM3
    empty.touch()
    return {f"checkpoints/{SAM3}": empty}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def runs_on(graph: Graph, version: str) -> bool:
    """Whether ComfyUI ``version`` has every node of ``graph`` (it is at least ``graph.comfy``)."""
    return _version(version) >= _version(graph.comfy)


def other_versions_sizes(graphs: dict[str, Graph]) -> dict[str, list[dict[int, list[int]]]]:
    """Graph name -> the node sizes measured in the front end of every installed ComfyUI version that runs
    the graph, other than the one it is written from (``graph.comfy``): widgets differ (e.g. 0.33.0's
    PreviewAny has a mode widget, a DynamicCombo hides inputs, core bounding boxes add sockets), so the
    layout leaves room for the largest."""
    from tests import comfy_harness
    from tests.comfy_frontend import open_frontend

    found: dict[str, list[dict[int, list[int]]]] = {name: [] for name in graphs}
    for version in getattr(comfy_harness, "COMFY_VERSIONS", ()):
        mine = {name: g for name, g in graphs.items() if runs_on(g, version) and g.comfy != version}
        if not mine:
            continue
        with comfy_harness.ComfyServer(version=version, models=placeholder_models()) as server:
            info = _started(server)
            with open_frontend(server, viewport=VIEWPORT, settings=SETTINGS) as page:
                for name, graph in mine.items():
                    found[name].append(measure(page, graph, info))
        print(f"measured the nodes in ComfyUI {version}'s front end")
    return found


def largest(*measured: dict[int, list[int]]) -> dict[int, list[int]]:
    """Node id -> ``[w, h]``: the largest width and height of each node over ``measured``."""
    return {nid: [max(m[nid][0] for m in measured), max(m[nid][1] for m in measured)] for nid in measured[0]}


def main(names: list[str]) -> None:
    """Write the graphs ``names`` (all when empty), each from the oldest ComfyUI version that runs it."""
    sys.path.insert(0, str(REPO))
    from tests.comfy_frontend import fit_view, load_workflow, open_frontend, settle
    from tests.comfy_harness import ComfyServer
    from vea_engine.synthetic import make_sample

    unknown = sorted(set(names) - set(GRAPHS))
    if unknown:
        raise SystemExit(f"unknown workflow(s) {unknown}; choose from {sorted(GRAPHS)}")
    sample = make_sample(seed=0)
    (WORKFLOWS / "api").mkdir(parents=True, exist_ok=True)
    sample.image.save(WORKFLOWS / EXAMPLE_IMAGE)
    graphs = {name: make(sample.question) for name, make in GRAPHS.items() if not names or name in names}
    elsewhere = other_versions_sizes(graphs)
    for version in sorted({g.comfy for g in graphs.values()}, key=_version):
        with ComfyServer(version=version, models=placeholder_models()) as server:
            info = _started(server)
            with open_frontend(server, viewport=VIEWPORT, settings=SETTINGS) as page:
                for name, graph in graphs.items():
                    if graph.comfy != version:
                        continue
                    boundings, note_rect = layout(graph, largest(measure(page, graph, info), *elsewhere[name]))
                    ui = ui_workflow(graph, info, boundings, note_rect)
                    (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
                    prompt = api_prompt(graph.nodes, info)
                    (WORKFLOWS / "api" / f"{name}.json").write_text(json.dumps(prompt, indent=2) + "\n")
                    missing = load_workflow(page, ui)
                    if missing:
                        raise RuntimeError(f"{name}: the front end reports missing nodes {missing}")
                    settle(page)
                    zoom = fit_view(page)["scale"]
                    right = max(b[0] + b[2] for b in boundings)
                    bottom = max([b[1] + b[3] for b in boundings] + [note_rect[1] + note_rect[3]])
                    thumbnail(page, WORKFLOWS / f"{name}.jpg", [0, 0, right, bottom])
                    print(
                        f"{name} (ComfyUI {version}): {right} x {bottom} graph units, fitted zoom {zoom:.3f} "
                        f"at {VIEWPORT[0]}x{VIEWPORT[1]}"
                    )


if __name__ == "__main__":
    main(sys.argv[1:])
