"""ComfyUI glue for VEA (V3 schema). Each node unpacks inputs, makes one engine call, wraps the result."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .answer import VEAAllInOne, VEAAnswer
from .attention import VEAAlignMask, VEABlend, VEADenoise, VEAExtractAttention, VEANormalize, VEASmooth
from .bridge import register_model_folder
from .evidence import VEAEvidenceBoxes, VEAZoom
from .loader import VEALayers, VEALoadVLM
from .profile import VEAProfileLayers

NODES: list[type[io.ComfyNode]] = [
    VEALoadVLM,
    VEALayers,
    VEAProfileLayers,
    VEAExtractAttention,
    VEADenoise,
    VEASmooth,
    VEANormalize,
    VEAAlignMask,
    VEABlend,
    VEAAnswer,
    VEAAllInOne,
    VEAEvidenceBoxes,
    VEAZoom,
]


class VEAExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folder()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> VEAExtension:
    return VEAExtension()
