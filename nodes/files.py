"""Every file a node reads or writes lies inside ComfyUI's folders, checked as ComfyUI's own nodes do.

* profiles (VEA Layers, mode ``profile``) are read from ``output/`` or ``input/``;
* datasets (VEA Profile Layers) are read from ``input/`` or a ``vea_datasets`` folder
  (``extra_model_paths.yaml`` can add more: ``vea_datasets: path/to/data``);
* profiles are written inside ``output/``.

A path is taken relative to those folders (an absolute path is accepted only when it
lies inside one); ``..`` that leaves them is refused with a message saying where files
may live.
"""

from __future__ import annotations

import os

DATASET_FOLDER = "vea_datasets"


def _inside(path: str, root: str) -> bool:
    path, root = os.path.abspath(path), os.path.abspath(root)
    return os.path.commonpath([path, root]) == root


def _short(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _roots(kind: str) -> list[str]:
    import folder_paths

    if kind == "profile":
        return [folder_paths.get_output_directory(), folder_paths.get_input_directory()]
    if kind == "dataset":
        folder_paths.add_model_folder_path(DATASET_FOLDER, folder_paths.get_input_directory(), is_default=True)
        return list(folder_paths.get_folder_paths(DATASET_FOLDER))
    return [folder_paths.get_output_directory()]


def _where(kind: str) -> str:
    return {
        "profile": "ComfyUI's output or input folder",
        "dataset": "ComfyUI's input folder (or a 'vea_datasets' folder of extra_model_paths.yaml)",
        "output": "ComfyUI's output folder",
    }[kind]


def resolve_read(node: str, argument: str, value: str, kind: str) -> str:
    """The existing file ``value`` names inside the folders of ``kind`` (``profile`` / ``dataset``)."""
    text = (value or "").strip()
    if not text:
        raise ValueError(f"{node}: {argument} is empty; give a file in {_where(kind)}, e.g. 'vea/data.jsonl'.")
    for root in _roots(kind):
        path = text if os.path.isabs(text) else os.path.join(root, text)
        if _inside(path, root) and os.path.isfile(path):
            return os.path.abspath(path)
    if any(_inside(text if os.path.isabs(text) else os.path.join(root, text), root) for root in _roots(kind)):
        raise ValueError(f"{node}: {argument} {_short(text)} is not a file in {_where(kind)}; check the name.")
    raise ValueError(f"{node}: {argument} {_short(text)} lies outside {_where(kind)}; files must live there.")


def resolve_write(node: str, argument: str, value: str) -> str:
    """Where ``value`` (relative to ComfyUI's output folder) may be written; folders are not created here."""
    text = (value or "").strip()
    root = _roots("output")[0]
    path = text if os.path.isabs(text) else os.path.join(root, text)
    if not text or not _inside(path, root) or os.path.abspath(path) == os.path.abspath(root):
        raise ValueError(
            f"{node}: {argument} {_short(text)} is not a file name inside {_where('output')}; "
            "write e.g. 'vea/layer_profile.json'."
        )
    return os.path.abspath(path)
