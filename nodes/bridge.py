"""The only place that talks to ComfyUI's runtime: sockets, memory manager, progress.

Socket payloads are frozen dataclasses from the engine (``LayerSelection``,
``AttentionMap``) or :class:`VLMHandle` below. Models are wrapped in ComfyUI's
``ModelPatcher`` so its memory manager can offload them like any other model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from comfy_api.latest import io

VLM_TYPE = io.Custom("VEA_VLM")
LAYERS_TYPE = io.Custom("VEA_LAYERS")
ATTENTION_TYPE = io.Custom("VEA_ATTENTION")

MODEL_FOLDER = "VLM"


class _ModuleHolder(torch.nn.Module):
    """Holds a transformers model for ``ModelPatcher``, which sets bookkeeping attributes
    (``device``, ``model_loaded_weight_memory``...) that a transformers model does not allow."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.hf_model = model
        self.device = next(model.parameters()).device


@dataclass(frozen=True)
class VLMHandle:
    """A loaded VLM plus the ComfyUI ``ModelPatcher`` that manages where it lives."""

    vlm: Any  # vea_engine.loading.VLM
    patcher: Any  # comfy.model_patcher.ModelPatcher

    def ready(self) -> Any:
        """Move the model onto ComfyUI's compute device (if it was offloaded) and return the VLM."""
        import comfy.model_management as mm

        mm.load_models_gpu([self.patcher], force_full_load=True)
        return self.vlm


def register_model_folder() -> None:
    """Declare ``models/VLM`` (and any ``VLM:`` entry of extra_model_paths.yaml) to ComfyUI."""
    import folder_paths

    # Idempotent; extra_model_paths.yaml entries (loaded before custom nodes) are kept after the default.
    folder_paths.add_model_folder_path(
        MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER), is_default=True
    )


def checkpoint_folders() -> list[str]:
    """Checkpoint folders (containing config.json) under every registered VLM folder, as relative names."""
    import folder_paths

    register_model_folder()
    names: set[str] = set()
    for root in folder_paths.get_folder_paths(MODEL_FOLDER):
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            if "config.json" in filenames:
                names.add(os.path.relpath(dirpath, root).replace(os.sep, "/"))
                dirnames.clear()
            elif os.path.relpath(dirpath, root).count(os.sep) >= 2:
                dirnames.clear()
    return sorted(names)


def resolve_checkpoint(name: str) -> str:
    """Full path of a checkpoint folder name from :func:`checkpoint_folders`."""
    import folder_paths

    register_model_folder()
    for root in folder_paths.get_folder_paths(MODEL_FOLDER):
        path = os.path.join(root, name)
        if os.path.isfile(os.path.join(path, "config.json")):
            return path
    roots = ", ".join(folder_paths.get_folder_paths(MODEL_FOLDER))
    raise ValueError(
        f"VEA Load VLM: checkpoint folder {name!r} was not found in {roots}; put the checkpoint folder "
        "(config.json + *.safetensors) there, or type a hub id."
    )


def load_handle(
    source: str, dtype: str, device: str, attn_implementation: str, resolution: str | int = "paper"
) -> VLMHandle:
    """Load with the engine on ComfyUI's offload device and wrap it for the memory manager."""
    import comfy.model_management as mm
    import comfy.model_patcher

    from ..vea_engine.loading import load_vlm

    if device in ("cpu", "default"):
        load_device = torch.device("cpu") if device == "cpu" else mm.get_torch_device()
    else:
        load_device = torch.device(device)  # a cuda:N the Load VLM node offered
    offload_device = torch.device("cpu") if device == "cpu" else mm.unet_offload_device()
    vlm = load_vlm(
        source, dtype=dtype, device=offload_device, attn_implementation=attn_implementation, resolution=resolution
    )
    size = sum(p.numel() * p.element_size() for p in vlm.model.parameters())
    patcher = comfy.model_patcher.ModelPatcher(_ModuleHolder(vlm.model), load_device, offload_device, size=size)
    return VLMHandle(vlm, patcher)


def progress_callback(total: int | None = None):
    """``progress(done, total)`` for the engine: drives a ComfyUI progress bar and honours Cancel."""
    import comfy.model_management as mm
    import comfy.utils

    bar = comfy.utils.ProgressBar(total or 1)

    def progress(done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total)

    return progress


def check_question(node: str, question: str | None) -> bool | str:
    """``validate_inputs`` check of a question widget (None when it comes through a link)."""
    if isinstance(question, str) and not question.strip():
        return f"{node}: question is empty; type the question to ask about the image."
    return True


def split_questions(text: str, per_line: bool) -> str | list[str]:
    """The question input: the whole text, or one question per non-empty line."""
    if not per_line:
        return text
    return [line.strip() for line in text.splitlines() if line.strip()] or [text]


def mask_batch(mask: torch.Tensor) -> torch.Tensor:
    """A ComfyUI MASK as ``[B, H, W]`` (some nodes emit a single ``[H, W]`` mask)."""
    return mask[None] if mask.ndim == 2 else mask
