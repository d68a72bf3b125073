"""ComfyUI-VEA: Visual Evidence Augmentation nodes (loaded by ComfyUI as a custom node package).

ComfyUI imports this folder as a package; the nodes live in ``nodes/`` and the
engine in ``vea_engine/`` (which never imports ComfyUI). Importing has no side
effects: models load when a node runs. Outside ComfyUI (plain Python, pytest
collecting this folder as a package) there is no ``comfy_api`` and nothing is
exported.

``WEB_DIRECTORY`` is the pack's web folder, served by ComfyUI at
``/extensions/<pack folder>/``; the front end reads each node's help page from its
``docs/<node id>.md``.
"""

import importlib.util

if importlib.util.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint

    WEB_DIRECTORY = "./web"
    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
