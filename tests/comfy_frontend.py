"""Drive the real ComfyUI front end in headless Chromium (Playwright, sync API).

Uses Debian's ``/usr/bin/chromium`` (never ``playwright install``); every request to a host
other than 127.0.0.1/localhost is aborted. Typical use::

    from tests.comfy_frontend import open_frontend, load_workflow, graph_to_prompt, screenshot

    with ComfyServer() as server, open_frontend(server) as page:
        assert load_workflow(page, json.loads(Path("workflows/x.json").read_text())) == []
        prompt = graph_to_prompt(page)              # API format, ready for server.run(prompt)
        screenshot(page, "artifacts/x.png")
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.parse
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("VEA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}

# Per page: console lines ("error: ..."), page errors and blocked (non-loopback) URLs.
_PAGE_LOGS: weakref.WeakKeyDictionary[Any, dict[str, list[str]]] = weakref.WeakKeyDictionary()

# Installed once per page: records the missing node types the front end itself collects in
# app.loadGraphData (nodes whose type is not in LiteGraph.registered_node_types) and hands to
# extensions' afterConfigureGraph hook, which runs for every loaded graph.
_INSTALL_PROBE_JS = """
() => {
  if (window.__harness) return true;
  window.__harness = { missing: null, loads: 0 };
  window.app.registerExtension({
    name: "vea.harness.missingNodes",
    afterConfigureGraph(missing) {
      window.__harness.missing = (missing || []).map(m => (typeof m === "string" ? m : m.type));
      window.__harness.loads += 1;
    },
  });
  return true;
}
"""

_LOAD_JS = """
async (workflow) => {
  const h = window.__harness;
  const before = h.loads;
  h.missing = null;
  await window.app.loadGraphData(workflow, true, true, null, { showMissingNodesDialog: true });
  const registered = window.LiteGraph.registered_node_types;
  const declared = [];
  const collect = (nodes) => { for (const n of nodes || []) declared.push(n.type); };
  collect(workflow.nodes);
  for (const sg of (workflow.definitions && workflow.definitions.subgraphs) || []) collect(sg.nodes);
  const unregistered = declared.filter(t => !(t in registered));
  const broken = window.app.graph.nodes.filter(n => n.has_errors).map(n => n.type);
  return {
    hookRan: h.loads > before,
    frontend: h.missing || [],
    unregistered,
    broken,
    loadedNodes: window.app.graph.nodes.length,
  };
}
"""


def _only_loopback(route) -> None:
    url = route.request.url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("data", "blob", "about") or parts.hostname in LOOPBACK_HOSTS:
        route.continue_()
    else:
        page_logs = None
        frame = route.request.frame if hasattr(route.request, "frame") else None
        with contextlib.suppress(Exception):
            page_logs = _PAGE_LOGS.get(frame.page) if frame is not None else None
        if page_logs is not None:
            page_logs["blocked"].append(url)
        route.abort()


def post_setting(base_url: str, key: str, value: Any) -> None:
    """``POST /settings/<key>`` on a loopback ComfyUI at ``base_url``."""
    import urllib.request

    host = urllib.parse.urlsplit(base_url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing non-loopback server {base_url}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(
        f"{base_url}/settings/{urllib.parse.quote(key)}",
        data=json.dumps(value).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with opener.open(req, timeout=30) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST /settings/{key} -> HTTP {resp.status}")


def wait_for_app(page, timeout: float = 60.0) -> None:
    """Wait until ``window.app`` is set up: Vue app ready, graph present, node types registered."""
    page.wait_for_function(
        """() => !!(window.app && window.app.vueAppReady && window.app.graph && window.LiteGraph
                 && Object.keys(window.LiteGraph.registered_node_types).length > 0)""",
        timeout=timeout * 1000,
        polling=200,
    )
    page.evaluate(_INSTALL_PROBE_JS)


@contextlib.contextmanager
def open_frontend(
    server,
    *,
    timeout: float = 60.0,
    viewport: tuple[int, int] = (1400, 900),
    settings: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Open the ComfyUI page of ``server`` (a ComfyServer or a loopback base URL) and yield the Page.

    ``Comfy.TutorialCompleted`` is set first (plus any ``settings``) so no first-run dialog
    appears. A fresh Chromium profile is used and removed afterwards.
    """
    from playwright.sync_api import sync_playwright  # only the browser tests need it

    base_url = server.url if hasattr(server, "url") else str(server).rstrip("/")
    for key, value in {"Comfy.TutorialCompleted": True, **(settings or {})}.items():
        post_setting(base_url, key, value)
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(
            f"{CHROMIUM} not found; run `bash scripts/install_comfyui.sh` (installs Debian chromium)"
        )

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]},
            timeout=timeout * 1000,
        )
        try:
            context.set_default_timeout(timeout * 1000)
            context.route("**/*", _only_loopback)
            page = context.pages[0] if context.pages else context.new_page()
            logs = {"console": [], "pageerror": [], "blocked": []}
            _PAGE_LOGS[page] = logs
            page.on("console", lambda msg: logs["console"].append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda err: logs["pageerror"].append(str(err)))
            page.goto(base_url + "/", wait_until="domcontentloaded")
            wait_for_app(page, timeout)
            yield page
        finally:
            context.close()


def page_logs(page) -> dict[str, list[str]]:
    """``{"console": [...], "pageerror": [...], "blocked": [...]}`` collected for ``page``."""
    return _PAGE_LOGS.get(page, {"console": [], "pageerror": [], "blocked": []})


def load_workflow(page, workflow: dict) -> list[str]:
    """``app.loadGraphData(workflow)`` in the page; returns the node types the front end lacks.

    A type counts as missing when the front end's own check reports it (its list of types
    not in ``LiteGraph.registered_node_types``, the same list that feeds the "missing nodes"
    dialog), when any workflow node (or subgraph node) has an unregistered type, or when a
    loaded node is flagged ``has_errors`` (the placeholder for an unknown type). Empty list:
    every node is known. Sorted, without duplicates.
    """
    if not isinstance(workflow, dict) or "nodes" not in workflow:
        raise ValueError(
            "load_workflow needs a UI-format workflow (a dict with 'nodes' and 'links'), not an API prompt"
        )
    result = page.evaluate(_LOAD_JS, workflow)
    if not result["hookRan"]:
        raise RuntimeError(
            f"app.loadGraphData did not finish configuring the graph: {page_logs(page)['pageerror'][-5:]}"
        )
    return sorted(set(result["frontend"]) | set(result["unregistered"]) | set(result["broken"]))


def graph_to_prompt(page) -> dict:
    """``(await app.graphToPrompt()).output``: the loaded graph as an API-format prompt."""
    return page.evaluate("async () => (await window.app.graphToPrompt()).output")


def graph_to_workflow(page) -> dict:
    """``(await app.graphToPrompt()).workflow``: the loaded graph re-serialized in UI format."""
    return page.evaluate("async () => (await window.app.graphToPrompt()).workflow")


def screenshot(page, path: str | os.PathLike) -> Path:
    """Save a PNG of the page (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => window.app.graph.setDirtyCanvas(true, true)")
    page.wait_for_timeout(300)  # let the canvas redraw once
    page.screenshot(path=str(path))
    return path


# ---- layout helpers: node sizes as the front end draws them --------------------------------------
# Image nodes grow once their image has loaded: LoadImage right after app.loadGraphData,
# SaveImage / PreviewImage after a run.
OUTPUT_IMAGE_NODES = ("SaveImage", "PreviewImage")
_IMAGES_SHOWN_JS = """(types) => {
  window.app.graph.setDirtyCanvas(true, true);  // a node takes up its images when drawn
  return window.app.graph._nodes.filter(n => types.includes(n.type))
    .every(n => n.imgs && n.imgs.length && n.imgs.every(img => img.complete && img.naturalWidth > 0));
}"""
_SIZES_JS = """() => {
  window.app.graph.setDirtyCanvas(true, true);  // sizes follow the images at the next draw
  return Object.fromEntries(window.app.graph._nodes.map(n => [n.id, [...n.size].map(Math.round)]));
}"""
# What the front end does with an "executed" message: each image output node shows an image.
_SHOW_OUTPUTS_JS = """(image) => {
  for (const n of window.app.graph._nodes) {
    if (n.type === 'SaveImage' || n.type === 'PreviewImage') {
      const id = String(n.id);
      window.app.api.dispatchCustomEvent('executed',
        {node: id, display_node: id, prompt_id: 'layout', output: {images: [image]}});
    }
  }
}"""
_FIT_JS = """async () => {
  await window.app.extensionManager.command.execute('Comfy.Canvas.FitView');
  await new Promise(r => setTimeout(r, 700));  // the fit is animated (350 ms)
  return {scale: window.app.canvas.ds.scale, lowQuality: window.app.canvas.low_quality};
}"""


def settle(page, image_types=("LoadImage",)) -> dict[int, list[int]]:
    """Wait until the nodes of ``image_types`` show their images and no node size changes; returns the sizes."""
    page.wait_for_function(_IMAGES_SHOWN_JS, arg=list(image_types), timeout=30_000, polling=100)
    before = None
    for _ in range(50):
        page.wait_for_timeout(200)
        now = page.evaluate(_SIZES_JS)
        if now == before:
            return {int(k): v for k, v in now.items()}
        before = now
    raise RuntimeError("node sizes did not settle")


def show_outputs(page, image_name: str) -> dict[int, list[int]]:
    """Show input image ``image_name`` in every image output node, as after a run; returns the settled sizes."""
    page.evaluate(_SHOW_OUTPUTS_JS, {"filename": image_name, "subfolder": "", "type": "input"})
    return settle(page, ["LoadImage", *OUTPUT_IMAGE_NODES])


def fit_view(page) -> dict:
    """Run the front end's "Zoom to fit"; returns ``{"scale", "lowQuality"}`` after the animation."""
    return page.evaluate(_FIT_JS)
