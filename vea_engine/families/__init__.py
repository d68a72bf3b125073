"""Family adapters, detected from the checkpoint config's ``model_type``."""

from __future__ import annotations

from typing import Any

from .base import FamilyAdapter
from .gemma3 import Gemma3Adapter
from .gemma4 import Gemma4Adapter
from .glm4v import Glm4vAdapter
from .idefics3 import Idefics3Adapter, SmolVLMAdapter
from .internvl import InternVLAdapter
from .lfm2_vl import Lfm2VlAdapter
from .llama4 import Llama4Adapter
from .llava import LlavaAdapter
from .llava_next import LlavaNextAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .mistral3 import Mistral3Adapter
from .paligemma import PaliGemmaAdapter
from .qwen3_5 import Qwen3_5Adapter
from .qwen3_vl import Qwen3VLAdapter
from .qwen_vl import QwenVLAdapter

ADAPTERS: tuple[type[FamilyAdapter], ...] = (
    QwenVLAdapter,
    LlavaAdapter,
    Gemma3Adapter,
    LlavaNextAdapter,
    Qwen3VLAdapter,
    LlavaOnevisionAdapter,
    Idefics3Adapter,
    SmolVLMAdapter,
    InternVLAdapter,
    PaliGemmaAdapter,
    Llama4Adapter,
    Glm4vAdapter,
    Mistral3Adapter,
    Qwen3_5Adapter,
    Gemma4Adapter,
    Lfm2VlAdapter,
)


def supported_model_types() -> list[str]:
    """Every ``config.model_type`` with an adapter."""
    return sorted(t for adapter in ADAPTERS for t in adapter.model_types)


def adapter_class(model_type: str) -> type[FamilyAdapter]:
    """The adapter class for ``model_type``; a ValueError listing supported types otherwise."""
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise ValueError(
        f"model type {model_type!r} is not supported by VEA; supported types: {', '.join(supported_model_types())}."
    )


def get_adapter(processor: Any, config: Any) -> FamilyAdapter:
    """Instantiate the adapter for a loaded processor + model config."""
    return adapter_class(getattr(config, "model_type", None))(processor, config)


__all__ = ["ADAPTERS", "FamilyAdapter", "adapter_class", "get_adapter", "supported_model_types"]
