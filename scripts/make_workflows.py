"""Generate the shipped workflows (UI format + API format) from one description each.

Both formats are derived from the same graph below and from the live node
definitions of a real ComfyUI server (``/object_info``: widget order, socket
types), so they cannot drift apart. Thumbnails are screenshots of each UI
workflow loaded in the real front end.

Run: ``.venv/bin/python scripts/make_workflows.py`` (needs ``scripts/install_comfyui.sh``).
Writes ``workflows/<name>.json`` (UI, served by ComfyUI's template browser),
``workflows/<name>.jpg`` (thumbnail), ``workflows/api/<name>.json`` (for POST /prompt)
and ``workflows/vea_example.png`` (the example image the workflows load).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
EXAMPLE_IMAGE = "vea_example.png"
QWEN = "Qwen2.5-VL-7B-Instruct"
LLAVA = "llava-1.5-7b-hf"


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (source node id, output name)
    title: str | None = None


def _question(pos, text):
    return Node(1, "PrimitiveStringMultiline", pos, {"value": text}, title="Question")


def basic(question: str) -> list[Node]:
    return [
        _question((40, 420), question),
        Node(2, "VEALoadVLM", (40, 80), {"checkpoint": QWEN}),
        Node(3, "LoadImage", (40, 620), {"image": EXAMPLE_IMAGE}),
        Node(4, "VEALayers", (420, 80), {"mode": "preset"}, {"model": (2, "model")}),
        Node(
            5,
            "VEAExtractAttention",
            (420, 300),
            {},
            {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING"), "layers": (4, "layers")},
        ),
        Node(6, "VEADenoise", (820, 80), {"lam": 10.0}, {"attention": (5, "attention")}),
        Node(7, "VEASmooth", (820, 260), {"sigma": 0.5}, {"attention": (6, "denoised")}),
        Node(8, "VEANormalize", (820, 440), {}, {"mask": (7, "smoothed")}),
        Node(9, "VEABlend", (1180, 80), {"alpha": 0.5}, {"image": (5, "model_image"), "mask": (8, "normalized")}),
        Node(
            10,
            "VEAAnswer",
            (1180, 300),
            {"prompt_style": "vea"},
            {"model": (2, "model"), "image": (9, "highlighted"), "question": (1, "STRING")},
        ),
        Node(11, "PreviewAny", (1560, 300), {}, {"source": (10, "answer")}, title="VEA answer"),
        Node(12, "SaveImage", (1560, 500), {"filename_prefix": "vea/highlighted"}, {"images": (9, "highlighted")}),
        Node(13, "PreviewImage", (1180, 620), {}, {"images": (5, "heatmap")}),
    ]


def delegate(question: str) -> list[Node]:
    return [
        _question((40, 460), question),
        Node(2, "VEALoadVLM", (40, 80), {"checkpoint": QWEN}, title="Mask model (Qwen2.5-VL)"),
        Node(3, "LoadImage", (40, 660), {"image": EXAMPLE_IMAGE}),
        Node(4, "VEALoadVLM", (40, 260), {"checkpoint": LLAVA}, title="Answer model (LLaVA-1.5)"),
        Node(5, "VEALayers", (420, 80), {"mode": "preset"}, {"model": (2, "model")}),
        Node(
            6,
            "VEAExtractAttention",
            (420, 300),
            {},
            {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING"), "layers": (5, "layers")},
        ),
        Node(7, "VEADenoise", (820, 80), {}, {"attention": (6, "attention")}),
        Node(8, "VEASmooth", (820, 260), {}, {"attention": (7, "denoised")}),
        Node(9, "VEANormalize", (820, 440), {}, {"mask": (8, "smoothed")}),
        Node(
            10,
            "VEAAlignMask",
            (1180, 80),
            {},
            {
                "mask": (9, "normalized"),
                "attention": (6, "attention"),
                "image": (3, "IMAGE"),
                "answer_model": (4, "model"),
            },
        ),
        Node(11, "VEABlend", (1180, 330), {}, {"image": (10, "aligned_image"), "mask": (10, "aligned_mask")}),
        Node(
            12,
            "VEAAnswer",
            (1560, 80),
            {"prompt_style": "vea"},
            {"model": (4, "model"), "image": (11, "highlighted"), "question": (1, "STRING")},
        ),
        Node(13, "PreviewAny", (1940, 80), {}, {"source": (12, "answer")}, title="VEA answer (delegate mask)"),
        Node(14, "SaveImage", (1560, 400), {"filename_prefix": "vea/delegate"}, {"images": (11, "highlighted")}),
    ]


def compare(question: str) -> list[Node]:
    return [
        _question((40, 300), question),
        Node(2, "VEALoadVLM", (40, 80), {"checkpoint": QWEN}),
        Node(3, "LoadImage", (40, 500), {"image": EXAMPLE_IMAGE}),
        Node(
            4, "VEAAllInOne", (440, 80), {}, {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING")}
        ),
        Node(5, "PreviewAny", (900, 60), {}, {"source": (4, "base_answer")}, title="Base answer"),
        Node(6, "PreviewAny", (900, 240), {}, {"source": (4, "vea_answer")}, title="VEA answer"),
        Node(7, "SaveImage", (900, 420), {"filename_prefix": "vea/compare"}, {"images": (4, "highlighted")}),
        Node(8, "MaskToImage", (1300, 60), {}, {"mask": (4, "mask")}),
        Node(9, "PreviewImage", (1300, 200), {}, {"images": (8, "IMAGE")}, title="Evidence map"),
    ]


GRAPHS = {"vea_basic": basic, "vea_delegate": delegate, "vea_compare": compare}


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def _input_specs(info: dict) -> list[tuple[str, list]]:
    order = info.get("input_order", {})
    specs = []
    for section in ("required", "optional"):
        defined = info["input"].get(section, {})
        for name in order.get(section, list(defined)):
            specs.append((name, defined[name]))
    return specs


def _output_index(info: dict, name: str) -> int:
    names = info.get("output_name") or info["output"]
    if name in names:
        return list(names).index(name)
    return list(info["output"]).index(name)


def _default(spec) -> object:
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(spec[0], list):
        return spec[0][0]
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


def ui_workflow(nodes: list[Node], object_info: dict) -> dict:
    """UI format (nodes + links) as the front end saves it."""
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
            "size": [340, 0],
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
    return {
        "last_node_id": max(n.id for n in nodes),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def main() -> None:
    sys.path.insert(0, str(REPO))
    from PIL import Image

    from tests.comfy_frontend import load_workflow, open_frontend, screenshot
    from tests.comfy_harness import ComfyServer
    from vea_engine.synthetic import make_sample

    sample = make_sample(seed=0)
    (WORKFLOWS / "api").mkdir(parents=True, exist_ok=True)
    sample.image.save(WORKFLOWS / EXAMPLE_IMAGE)
    with ComfyServer() as server:
        (server.input_dir / EXAMPLE_IMAGE).write_bytes((WORKFLOWS / EXAMPLE_IMAGE).read_bytes())
        info = server.object_info()
        for vlm in (QWEN, LLAVA):  # let the combo accept the names the workflows use
            info["VEALoadVLM"]["input"]["required"]["checkpoint"][1]["options"].append(vlm)
        with open_frontend(server, viewport=(1900, 1000)) as page:
            for name, graph in GRAPHS.items():
                nodes = graph(sample.question)
                ui = ui_workflow(nodes, info)
                (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
                (WORKFLOWS / "api" / f"{name}.json").write_text(json.dumps(api_prompt(nodes, info), indent=2) + "\n")
                missing = load_workflow(page, ui)
                if missing:
                    raise RuntimeError(f"{name}: the front end reports missing nodes {missing}")
                # zoom in enough for the front end to draw titles and widgets (it skips them when far out)
                page.evaluate("async () => await window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
                page.wait_for_timeout(300)
                png = WORKFLOWS / f"{name}.png"
                screenshot(page, png)
                shot = Image.open(png).convert("RGB").crop((60, 130, 1900, 1000))
                shot.resize((960, 454), Image.Resampling.LANCZOS).save(WORKFLOWS / f"{name}.jpg", quality=88)
                png.unlink()
    print("wrote", ", ".join(GRAPHS))


if __name__ == "__main__":
    main()
