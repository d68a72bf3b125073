"""Config fragments several tiny families share: vision towers, text decoders, greedy ids.

Plain dicts of transformers config fields (no transformers import), filled from a
:class:`~.spec.TinySpec` and the family's tokenizer.
"""

from __future__ import annotations

from typing import Any

from .spec import TinySpec

__all__ = ["CLIP_PATCH", "clip_vision", "greedy_ids", "llama_text", "siglip_vision", "text_sizes"]

#: Patch side in pixels of the CLIP towers (LLaVA-1.5, LLaVA-NeXT).
CLIP_PATCH = 14


def clip_vision(spec: TinySpec, **extra: Any) -> dict[str, Any]:
    """A CLIP vision tower config taking ``spec.image_size`` squares of 14-px patches."""
    return {
        "model_type": "clip_vision_model",
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "image_size": spec.image_size,
        "patch_size": CLIP_PATCH,
        "projection_dim": spec.vision_hidden_size,
        "hidden_act": "quick_gelu",
        "initializer_range": spec.initializer_range,
        **extra,
    }


def siglip_vision(spec: TinySpec, patch_size: int = 14, **extra: Any) -> dict[str, Any]:
    """A SigLIP vision tower config (no attention-pooling head) on ``spec.image_size`` squares."""
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "image_size": spec.image_size,
        "patch_size": patch_size,
        "hidden_act": "gelu_pytorch_tanh",
        "vision_use_head": False,
        "initializer_range": spec.initializer_range,
        **extra,
    }


def text_sizes(spec: TinySpec, tokenizer: Any) -> dict[str, Any]:
    """Sizes and special ids shared by every text decoder config."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim,
        "max_position_embeddings": spec.max_position_embeddings,
        "initializer_range": spec.initializer_range,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }


def llama_text(spec: TinySpec, tokenizer: Any, rope_theta: float, **extra: Any) -> dict[str, Any]:
    """A Llama-style decoder config: :func:`text_sizes`, SiLU MLP, RMSNorm eps 1e-5, default RoPE, untied head.

    ``extra`` adds or overrides fields (LLaVA-NeXT's Mistral: ``model_type``, ``sliding_window``).
    """
    return {
        **text_sizes(spec, tokenizer),
        "model_type": "llama",
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "tie_word_embeddings": False,
        **extra,
    }


def greedy_ids(tokenizer: Any, *eos: str) -> dict[str, Any]:
    """Generation-config ids: the tokenizer's bos/pad, and ``eos`` tokens (default: its eos)."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in eos] or [tokenizer.eos_token_id]
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": ids if len(ids) > 1 else ids[0],
        "pad_token_id": tokenizer.pad_token_id,
    }
