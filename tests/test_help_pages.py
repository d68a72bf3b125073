"""Every node's help page: present, true to the node, and shown by the real front end.

The front end (ComfyUI's node help panel) reads a custom node's Markdown help from the pack's
web folder (``WEB_DIRECTORY`` of ``__init__.py``, served at ``/extensions/<pack folder>/``):
``docs/<node id>/<locale>.md`` first, then ``docs/<node id>.md``. Each page has the sections
"Inputs" and "Outputs" (tables: name, type, default; name, type), "Example" and "Paper
defaults" (``- `name` = `value`: why``).

One source of truth: the tables are checked against the running server's ``/object_info`` (names,
types, defaults: the schema, whose paper values come from ``vea_engine.config``), every value the
"Paper defaults" list quotes against the engine's constants, and both lists against each other.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.request

import pytest

from tests.comfy_harness import DYNAMIC_COMBO, PACK_NAME, input_options, node_inputs
from tests.helpers import REPO
from vea_engine.config import DEFAULTS, PAPER_MAX_PIXELS, RESOLUTION_MODES, ROUNDING_MODES
from vea_engine.signals import SIGNALS

DOCS = REPO / "web" / "docs"
NODES = sorted(json.loads((REPO / "node_list.json").read_text()))
ARTIFACTS = REPO / "artifacts" / "help_pages"
#: Inputs whose default is the server's own (its first checkpoint folder): the page shows none.
MACHINE_DEFAULTS = {"checkpoint"}
#: The engine's paper values, by the input name the nodes give them.
PAPER_VALUES = {
    **{field.name: getattr(DEFAULTS, field.name) for field in dataclasses.fields(DEFAULTS)},
    "top_fraction": DEFAULTS.top_layer_fraction,
    "max_pixels": PAPER_MAX_PIXELS,
    "resolution": RESOLUTION_MODES[0],
    "rounding": ROUNDING_MODES[0],
    "signal": SIGNALS[0],
}
#: Socket types only newer servers have (ComfyUI 0.33+): a row of this type is absent where the server lacks it.
NEWER_TYPES = {"BOUNDING_BOX"}
NO_DEFAULT = "—"
PAPER_LINE = re.compile(r"- `(?P<name>[a-z_]+)` = `(?P<value>[^`]*)`: \S")


def shown(value) -> str:
    """How a page writes a default value: ``10``, ``0.5``, ``false``, ``""``, ``preset``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if value == "":
        return '""'
    return str(value)


def sections(text: str) -> dict[str, str]:
    """``{"## heading": body}`` of a page, plus ``"#"`` for the title line and ``""`` for the lead."""
    found, name, lines = {}, "", []
    for line in text.splitlines():
        if line.startswith("# "):
            found["#"] = line[2:].strip()
        elif line.startswith("## "):
            found[name] = "\n".join(lines).strip()
            name, lines = line[3:].strip(), []
        else:
            lines.append(line)
    found[name] = "\n".join(lines).strip()
    return found


def table(body: str) -> list[list[str]]:
    """The rows of the first Markdown table in ``body`` (header and rule dropped), as cells."""
    rows = [line for line in body.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in row.strip().strip("|").split(" | ")] for row in rows[2:]]
    assert all(len(row) == len(rows[0].strip().strip("|").split(" | ")) for row in cells), rows
    return cells


def default_cell(cell: str) -> str | None:
    """The value a default cell quotes (None for "—"); it must be one backquoted value or "—"."""
    if cell == NO_DEFAULT:
        return None
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"a default is one backquoted value or {NO_DEFAULT}, got {cell!r}"
    return match.group(1)


def page(node: str) -> dict:
    """A node's page, parsed: title, lead, inputs ``{name: (type, default)}``, outputs ``{name: type}``,
    paper defaults ``{name: value}``."""
    parts = sections((DOCS / f"{node}.md").read_text())
    headings = [name for name in parts if name not in ("", "#")]
    assert headings == ["Inputs", "Outputs", "Example", "Paper defaults"], (node, headings)
    inputs = {row[0]: (row[1], default_cell(row[2])) for row in table(parts["Inputs"])}
    outputs = {row[0]: row[1] for row in table(parts["Outputs"])}
    paper = {m["name"]: m["value"] for m in PAPER_LINE.finditer(parts["Paper defaults"])}
    return {"title": parts["#"], "lead": parts[""], "inputs": inputs, "outputs": outputs, "paper": paper, **parts}


# ---- the pages themselves (no server) --------------------------------------------------------
def test_every_node_has_one_page_and_every_page_a_node():
    assert sorted(path.stem for path in DOCS.glob("*.md")) == NODES
    assert not [path for path in DOCS.iterdir() if path.is_dir()], "no localised pages: docs/<node>.md is read for all"


@pytest.mark.parametrize("node", NODES)
def test_page_has_every_part_and_quotes_the_engines_paper_values(node):
    doc = page(node)
    assert len(doc["lead"]) > 100 and len(doc["Example"]) > 100, "what the node does, and a small example"
    assert doc["inputs"] and doc["outputs"]
    assert doc["Paper defaults"], "say which defaults are the paper's (or that the node has none)"
    for name, value in doc["paper"].items():
        assert name in doc["inputs"], f"{node}: paper default for {name!r}, which is not an input"
        assert value == doc["inputs"][name][1], f"{node}.{name}: the list says {value}, the table {doc['inputs'][name]}"
        if name in PAPER_VALUES:
            assert value == shown(PAPER_VALUES[name]), f"{node}.{name}: page {value}, engine {PAPER_VALUES[name]!r}"
    missing = sorted(set(PAPER_VALUES) & set(doc["inputs"]) - set(doc["paper"]))
    assert not missing, f"{node}: inputs with a paper value not listed under 'Paper defaults': {missing}"


def test_pack_exports_the_web_folder_only_inside_comfyui():
    text = (REPO / "__init__.py").read_text()
    match = re.search(r'^\s+WEB_DIRECTORY = "(.+)"$', text, re.MULTILINE)
    assert match and (REPO / match.group(1) / "docs").resolve() == DOCS


# ---- on the real server and front end --------------------------------------------------------
def _get(server, path: str) -> tuple[int, str, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(server.url + path, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as error:
        return error.code, "", b""


def _has_type(info: dict, kind: str) -> bool:
    """Whether any node of the server takes or gives sockets of type ``kind``."""
    return any(
        kind in node["output"] or any(spec[0] == kind for spec in node_inputs(node).values()) for node in info.values()
    )


def _server_type(spec: list) -> str:
    return "COMBO" if isinstance(spec[0], list) or spec[0] == DYNAMIC_COMBO else spec[0]


def _server_default(name: str, spec: list) -> str | None:
    if name in MACHINE_DEFAULTS:
        return None
    if len(spec) > 1 and spec[1].get("forceInput"):  # a socket: its widget default is never shown
        return None
    if spec[0] == DYNAMIC_COMBO:  # no "default": a new node starts on the first option
        return shown(input_options(spec)[0])
    return shown(spec[1]["default"]) if len(spec) > 1 and "default" in spec[1] else None


@pytest.mark.comfy
def test_pages_are_served_and_match_the_servers_schema(server):
    info = server.object_info()
    pack_nodes = sorted(k for k, v in info.items() if v.get("python_module") == f"custom_nodes.{PACK_NAME}")
    assert pack_nodes == NODES
    for node in NODES:
        status, kind, body = _get(server, f"/extensions/{PACK_NAME}/docs/{node}.md")
        assert status == 200 and "text/html" not in kind, (node, status, kind)  # the front end skips text/html
        assert body == (DOCS / f"{node}.md").read_bytes()
        doc, declared = page(node), node_inputs(info[node])
        assert doc["title"] == info[node]["display_name"]
        # a row of a newer socket type counts where the server has that type
        here = {n: row for n, row in doc["inputs"].items() if row[0] not in NEWER_TYPES or _has_type(info, row[0])}
        assert sorted(here) == sorted(declared), node
        for name, spec in declared.items():
            assert here[name] == (_server_type(spec), _server_default(name, spec)), (node, name, spec)
        outputs = {n: kind for n, kind in doc["outputs"].items() if kind not in NEWER_TYPES or _has_type(info, kind)}
        assert outputs == dict(zip(info[node]["output_name"], info[node]["output"], strict=True)), node


# The node alone on the canvas at scale 1, unselected; returns the page point of its title bar.
_PLACE_JS = """(type) => {
  const app = window.app;
  app.graph.clear();
  const node = window.LiteGraph.createNode(type);
  node.pos = [560, 300];  // clear of the side panels (left: node library, right: node info)
  app.graph.add(node);
  app.canvas.ds.offset = [0, 0];
  app.canvas.ds.scale = 1;
  app.graph.setDirtyCanvas(true, true);
  const rect = app.canvas.canvas.getBoundingClientRect();
  return [rect.left + node.pos[0] + 60, rect.top + node.pos[1] - window.LiteGraph.NODE_TITLE_HEIGHT / 2];
}"""


def _select(browser, node: str) -> None:
    """Put ``node`` alone on the canvas and click its title as a user does, until the selection toolbox
    shows its info button (front end 1.32, ComfyUI 0.3.75: help in the node library; 1.49, ComfyUI 0.33:
    the Info tab of the right side panel). A click while the page still settles may miss: tried 3 times."""
    button = browser.locator('[data-testid="info-button"]').first
    for attempt in range(3):
        x, y = browser.evaluate(_PLACE_JS, node)
        browser.wait_for_timeout(500)  # drawn at the new offset
        browser.mouse.click(x, y)
        try:
            button.wait_for(state="visible", timeout=5_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; the last try reports it
            if attempt == 2:
                from tests.comfy_frontend import screenshot

                screenshot(browser, ARTIFACTS / f"{node}-not-selected.png")
                raise


@pytest.mark.frontend
def test_front_end_shows_each_help_page(server):
    """Select each node with a click, open its info from the selection toolbox, see the page rendered (not the
    node description the panel falls back to); a screenshot per node under artifacts/help_pages/."""
    from tests.comfy_frontend import open_frontend, page_logs, screenshot

    with open_frontend(server, viewport=(1500, 1000), settings={"Comfy.Canvas.SelectionToolbox": True}) as browser:
        for node in NODES:
            doc = page(node)
            lead = re.split(r"[`*(]", doc["lead"].splitlines()[0])[0].strip()  # the page's first words, as rendered
            _select(browser, node)
            browser.locator('[data-testid="info-button"]').first.click()
            shown_lead = browser.get_by_text(lead, exact=False).first
            shown_lead.wait_for(state="visible", timeout=20_000)
            heading = browser.get_by_role("heading", name="Paper defaults").first
            heading.wait_for(state="visible", timeout=5_000)
            screenshot(browser, ARTIFACTS / f"{node}-{server.version}.png")
        assert not page_logs(browser)["pageerror"], page_logs(browser)["pageerror"]
