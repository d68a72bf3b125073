"""VEA Load VLM and VEA Layers: the model and which of its layers to read."""

from __future__ import annotations

import os
from typing import Any

from comfy_api.latest import io

from ..vea_engine.config import PAPER_MAX_PIXELS, RESOLUTION_MODES
from ..vea_engine.layers import LAYER_MODES
from ..vea_engine.loading import ATTN_IMPLEMENTATIONS, DTYPES, QUANTIZATIONS, describe_placement
from .bridge import LAYERS_TYPE, VLM_TYPE, checkpoint_folders, load_handle, resolve_checkpoint
from .checks import checked, device_options, validator
from .files import resolve_read
from .widgets import ComboWithInputs, chosen, custom_layers_input, node_schema, plain_values

HUB_ID_OPTION = "(use hub_id)"
PIXELS_OPTION = "pixels"
PROFILE_OPTION = "profile"


class VEALoadVLM(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        folders = checkpoint_folders()
        hub_id = io.String.Input(
            "hub_id",
            default="",
            tooltip="Hub id like 'Qwen/Qwen2.5-VL-7B-Instruct', used when checkpoint "
            f"is '{HUB_ID_OPTION}' (needs network access or a filled hub cache).",
        )
        return node_schema(
            node_id="VEALoadVLM",
            display_name="VEA Load VLM",
            category="VEA/loaders",
            description="Load a vision-language model (Qwen2/2.5/3-VL, LLaVA-1.5/NeXT/OneVision, Gemma 3, InternVL, "
            "Idefics3, SmolVLM, PaliGemma) from models/VLM or a hub id. ComfyUI's memory manager offloads it when "
            "other models need the memory. A checkpoint whose files changed (replaced, re-downloaded) is loaded "
            "again; an unchanged one comes from ComfyUI's cache.",
            inputs=[
                ComboWithInputs(
                    "checkpoint",
                    options=(*folders, HUB_ID_OPTION),
                    default=(folders or [HUB_ID_OPTION])[0],
                    tooltip="A checkpoint folder (config.json + *.safetensors) under models/VLM, or "
                    f"'{HUB_ID_OPTION}' to load a hub id.",
                    shows={HUB_ID_OPTION: (hub_id,)},
                ),
                io.Combo.Input(
                    "dtype",
                    options=list(DTYPES),
                    default="auto",
                    tooltip="Weight precision; auto keeps the checkpoint's. float32 on CPU.",
                ),
                io.Combo.Input(
                    "device",
                    options=device_options(),
                    default="default",
                    tooltip="default: ComfyUI's compute device (GPU when present); cpu: keep it on the CPU; cuda:N: "
                    "that GPU.",
                ),
                io.Combo.Input(
                    "attention",
                    options=list(ATTN_IMPLEMENTATIONS),
                    default=ATTN_IMPLEMENTATIONS[0],
                    tooltip="Attention kernel; VEA captures its rows on any of them. auto: eager at the paper's "
                    "resolution (reproduces the reference code bit for bit), else sdpa (memory does not grow with "
                    "the square of the tokens).",
                ),
                io.Combo.Input(
                    "resolution",
                    options=[*RESOLUTION_MODES, PIXELS_OPTION],
                    default="paper",
                    optional=True,
                    tooltip="Input resolution of processors with a pixel budget (Qwen2/2.5/3-VL). paper: at most "
                    "512*512 pixels, as in the paper; checkpoint: the checkpoint's own limit (more tokens: finer "
                    "detail, more memory and time); pixels: the max_pixels below. Other families have fixed sizes.",
                ),
                io.Int.Input(
                    "max_pixels",
                    default=PAPER_MAX_PIXELS,
                    optional=True,
                    min=1024,
                    max=2**31,
                    step=1024,
                    tooltip="Pixel budget per image when resolution is 'pixels' (e.g. 1048576 = 1024*1024).",
                ),
                io.String.Input(
                    "max_memory",
                    default="",
                    optional=True,
                    tooltip="Memory budget per device, to run a model larger than the GPU, e.g. "
                    "'cuda:0=8GiB,cpu=24GiB': decoder layers fill the GPU budget, then the CPU's; the rest is read "
                    "from disk (ComfyUI's temp folder) layer by layer. Slower: those weights move to the GPU on every "
                    "forward pass and every generated token. Empty: the whole model on the device, managed by ComfyUI.",
                ),
                io.Combo.Input(
                    "quantization",
                    options=list(QUANTIZATIONS),
                    default="none",
                    optional=True,
                    tooltip="8bit / 4bit weights through bitsandbytes (pip install bitsandbytes; CUDA GPU only): about "
                    "half / a quarter of the bfloat16 memory, slightly different answers (not the paper's weights); the "
                    "model then stays on the GPU.",
                ),
            ],
            outputs=[
                VLM_TYPE.Output("model", display_name="model", tooltip="The loaded model, for attention and answers.")
            ],
        )

    @classmethod
    @validator
    def validate_inputs(cls, checkpoint: Any = None) -> bool | str:  # one input: ComfyUI repeats a message per input
        name = chosen(checkpoint, "checkpoint")
        if name != HUB_ID_OPTION and name not in checkpoint_folders():
            return (
                f"VEA Load VLM: checkpoint folder {name!r} is not in models/VLM (or a 'VLM:' folder of "
                "extra_model_paths.yaml); put the checkpoint folder (config.json + *.safetensors) there and "
                "refresh, or choose '(use hub_id)'."
            )
        return True

    @classmethod
    def fingerprint_inputs(cls, **inputs: Any) -> Any:
        """The checkpoint folder's files (name, size, modification time): a replaced file reloads the model."""
        values = plain_values(cls.define_schema(), inputs)
        if values.get("checkpoint") == HUB_ID_OPTION:
            return ("hub", values.get("hub_id"))
        try:
            return checkpoint_fingerprint(resolve_checkpoint(values.get("checkpoint")))
        except (ValueError, TypeError, OSError):
            return None  # validation or execute reports the missing folder

    @classmethod
    @checked
    def execute(
        cls,
        checkpoint: str,
        hub_id: str,
        dtype: str,
        device: str,
        attention: str,
        resolution: str = "paper",
        max_pixels: int = PAPER_MAX_PIXELS,
        max_memory: str = "",
        quantization: str = "none",
    ) -> io.NodeOutput:
        if checkpoint == HUB_ID_OPTION and not hub_id.strip():
            raise ValueError(
                f"VEA Load VLM: checkpoint is '{HUB_ID_OPTION}' but hub_id is empty; type e.g. 'org/name'."
            )
        source = hub_id.strip() if checkpoint == HUB_ID_OPTION else resolve_checkpoint(checkpoint)
        pixels = max_pixels if resolution == PIXELS_OPTION else resolution
        handle = load_handle(source, dtype, device, attention, pixels, max_memory=max_memory, quantization=quantization)
        placement = handle.vlm.device_map
        return io.NodeOutput(handle, ui={"text": [describe_placement(placement)]} if placement else None)


class VEALayers(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="VEALayers",
            display_name="VEA Layers",
            category="VEA/layers",
            description="Choose the decoder layers whose attention VEA reads: the paper's pre-profiled layers for "
            "known checkpoints (else all layers, as the reference code does; logged), all, the deepest half, or your "
            "own list. Only softmax-attention layers have attention to read: on a hybrid decoder (Qwen3.5) 'all' and "
            "the deepest half count those, and a list naming a linear-attention layer is refused.",
            inputs=[
                VLM_TYPE.Input("model", tooltip="The model the layers belong to (checks depth, finds presets)."),
                ComboWithInputs(
                    "mode",
                    options=(*LAYER_MODES, PROFILE_OPTION),
                    default="preset",
                    tooltip="preset: paper layers for a known checkpoint; custom: your own list; profile: the layers "
                    "of a profile JSON (VEA Profile Layers or 'python -m vea_engine profile').",
                    shows={"custom": (custom_layers_input(),), PROFILE_OPTION: (profile_path_input(),)},
                ),
            ],
            outputs=[
                LAYERS_TYPE.Output(
                    "layers", display_name="layers", tooltip="The selected layers and where they came from."
                )
            ],
        )

    @classmethod
    @checked
    def execute(cls, model, mode: str, custom_layers: str, profile_path: str) -> io.NodeOutput:
        from ..vea_engine.layers import describe_layers, select_layers
        from ..vea_engine.profiling import LayerProfile

        if mode == PROFILE_OPTION:
            path = resolve_read("VEA Layers", "profile_path", profile_path, "profile")
            selection = LayerProfile.from_json(path).selection()
            selection.check(model.vlm.layer_kinds, "VEA Layers (profile)")
        else:
            selection = select_layers(mode, model.vlm.layer_kinds, model.vlm.name, custom=custom_layers)
        return io.NodeOutput(selection, ui={"text": [describe_layers(selection)]})


def profile_path_input() -> io.String.Input:
    return io.String.Input(
        "profile_path",
        default="",
        tooltip="Profile JSON for mode 'profile', relative to ComfyUI's output (or input) folder, e.g. "
        "'vea/layer_profile.json' from VEA Profile Layers.",
    )


def checkpoint_fingerprint(folder: str) -> tuple[tuple[str, int, int], ...]:
    """``(relative path, size, mtime_ns)`` of every file under a checkpoint ``folder`` (config,
    weights, processor files), following links; sorted. Reads metadata only."""
    entries = []
    for root, _dirs, files in os.walk(folder, followlinks=True):
        for name in files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            entries.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))
