"""The only place that talks to ComfyUI's runtime: sockets, memory manager, progress.

Socket payloads are frozen dataclasses from the engine (``LayerSelection``,
``AttentionMap``) or :class:`VLMHandle` below. Models are wrapped in ComfyUI's
``ModelPatcher`` so its memory manager can offload them like any other model.

A model spread by accelerate (a memory budget, layers on the CPU or disk) or quantised
by bitsandbytes is not moved as a whole: the memory manager sees, and moves, only the
parts that live on the load device (:class:`_ResidentHolder`); accelerate's hooks bring
the other layers in as the forward pass reaches them.
"""

from __future__ import annotations

import os
import re
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


class _ResidentHolder(torch.nn.Module):
    """Holds the parts of an accelerate-dispatched model that live on the load device, for ``ModelPatcher``.

    The memory manager measures (``module_size``) and moves (``.to``) only these parts: the
    layers kept on the CPU or disk (weights on the meta device between calls) are not its
    to move, and quantised weights (``movable=False``) cannot move at all, so then nothing
    is exposed and ``size`` alone tells the manager the GPU footprint.
    """

    def __init__(self, model: torch.nn.Module, load_device: torch.device, movable: bool) -> None:
        super().__init__()
        self.resident = torch.nn.ModuleList(resident_modules(model, load_device) if movable else [])
        self.device = load_device  # where the parts are now (ModelPatcher keeps it up to date)
        object.__setattr__(self, "hf_model", model)  # not a registered child: the manager must not walk it


def resident_modules(model: torch.nn.Module, device: torch.device) -> list[torch.nn.Module]:
    """The top-level parts of a dispatched model that accelerate placed on ``device`` (``hf_device_map``)."""
    from ..vea_engine.loading import dispatch_map

    placed = dispatch_map(model) or {}
    modules = dict(model.named_modules())
    return [modules[name] for name, where in placed.items() if where != "disk" and _same_device(where, device)]


def _same_device(a: str | torch.device, b: str | torch.device) -> bool:
    """``cuda`` and ``cuda:0`` alike (an index-less CUDA device means the current one)."""
    a, b = torch.device(a), torch.device(b)
    if a.type == "cuda" and (a.index is None or b.index is None) and b.type == "cuda":
        return (a.index if a.index is not None else torch.cuda.current_device()) == (
            b.index if b.index is not None else torch.cuda.current_device()
        )
    return a == b


def bytes_on(model: torch.nn.Module, device: torch.device) -> int:
    """Bytes of the parameters and buffers of ``model`` that lie on ``device`` (meta tensors: none)."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers()) if _same_device(t.device, device)}
    return sum(t.numel() * t.element_size() for t in tensors.values())


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

    def ready_for(self, node: str, images: Any) -> Any:
        """:meth:`ready`, once the images this node received are within the model's processor limits (its
        aspect and size limits, checked before anything runs; the message names ``node``)."""
        from ..vea_engine.inputs import check_image_sizes

        check_image_sizes(self.vlm.adapter, [images], f"{node}: image")
        return self.ready()


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
    source: str,
    dtype: str,
    device: str,
    attn_implementation: str,
    resolution: str | int = "paper",
    max_memory: str = "",
    quantization: str = "none",
) -> VLMHandle:
    """Load with the engine and wrap it for the memory manager.

    Without ``max_memory`` and ``quantization`` the model is loaded on ComfyUI's offload
    device and moved as a whole. With them it is spread by accelerate (``max_memory`` like
    ``cuda:0=8GiB,cpu=24GiB``; disk beyond that, in ComfyUI's temp folder) or quantised;
    the patcher then reports and moves only what lives on the load device.
    """
    import comfy.model_management as mm
    import comfy.model_patcher

    from ..vea_engine.loading import load_vlm

    if device in ("cpu", "default"):
        load_device = torch.device("cpu") if device == "cpu" else mm.get_torch_device()
    else:
        load_device = torch.device(device)  # a cuda:N the Load VLM node offered
    offload_device = torch.device("cpu") if device == "cpu" else mm.unet_offload_device()
    common = {"dtype": dtype, "attn_implementation": attn_implementation, "resolution": resolution}
    if not (max_memory or "").strip() and quantization == "none":
        vlm = load_vlm(source, device=offload_device, **common)
        size = sum(p.numel() * p.element_size() for p in vlm.model.parameters())
        patcher = comfy.model_patcher.ModelPatcher(_ModuleHolder(vlm.model), load_device, offload_device, size=size)
        return VLMHandle(vlm, patcher)
    vlm = load_vlm(
        source,
        device=load_device,
        max_memory=max_memory or None,
        offload_folder=offload_folder_for(source),
        quantization=quantization,
        **common,
    )
    movable = quantization == "none"
    holder = _ResidentHolder(vlm.model, load_device, movable)
    size = bytes_on(vlm.model, load_device)
    if movable:  # the manager loads it when a node needs it, as any other model
        holder.to(offload_device)
        holder.device = offload_device
    patcher = comfy.model_patcher.ModelPatcher(
        holder, load_device, offload_device if movable else load_device, size=size
    )
    return VLMHandle(vlm, patcher)


def offload_folder_for(source: str) -> str:
    """Where accelerate may keep the disk-offloaded weights of ``source``: inside ComfyUI's temp folder."""
    import folder_paths

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(os.path.normpath(source)) or "model")[:100]
    return os.path.join(folder_paths.get_temp_directory(), "vea_offload", name)


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
