"""Tiny Qwen3-VL: interleaved M-RoPE, q/k-normed decoder, 16-px patches and deepstack features.

Reuses the Qwen2 tokenizer, text config, template content loop and generation ids of
:mod:`.qwen_vl`; its chat template has no default system prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .qwen_vl import QWEN_CONTENT_LOOP, qwen_generation, qwen_special_ids, qwen_text, qwen_tokenizer
from .spec import FamilyBuilder, FamilyExpectations, TinySpec

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, ProcessorMixin

__all__ = ["EXPECTED", "QWEN3_VL", "QWEN3_VL_CHAT_TEMPLATE"]

#: Qwen/Qwen3-VL-*-Instruct chat template (no default system prompt, unlike Qwen2.5-VL).
QWEN3_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}" + QWEN_CONTENT_LOOP + "{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

EXPECTED = FamilyExpectations(
    chat="<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n",
    image_token="<|image_pad|>",
    # smart_resize to multiples of 32: 200x150 -> 192x160 (12 x 10 patches of 16 px, merged 2x2); 448 -> 28 x 28
    image_grids={(200, 150): (1, 10, 12), (448, 448): (1, 28, 28)},
    image_tokens={(200, 150): 6 * 5, (448, 448): 14 * 14},
)

_QWEN3_PATCH = 16


def _qwen3_vl_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Qwen3VLConfig

    half = spec.head_dim // 2
    text = qwen_text(
        spec,
        tokenizer,
        # interleaved M-RoPE; real: [24, 20, 20] of 64 frequencies
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [half - 2 * (half // 4), half // 4, half // 4],
            "mrope_interleaved": True,
        },
    )
    del text["use_sliding_window"]  # not a Qwen3-VL text config field
    side = 8  # learned position embeddings for an 8 x 8 patch grid, interpolated to any grid (real: 48 x 48)
    vision = {
        "depth": spec.vision_num_hidden_layers,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_attention_heads,
        "out_hidden_size": spec.hidden_size,
        "hidden_act": "gelu_pytorch_tanh",
        "patch_size": _QWEN3_PATCH,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": side * side,
        "deepstack_visual_indexes": [0],  # features of vision block 0 are added after decoder layer 0
        "initializer_range": spec.initializer_range,
    }
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=False, **qwen_special_ids(tokenizer)
    )


def qwen3_vl_processor(spec: TinySpec, tokenizer: Any, chat_template: str = QWEN3_VL_CHAT_TEMPLATE) -> ProcessorMixin:
    """Qwen3-VL's processor (16-px patches, 2x2 merge, the spec's pixel budget) with ``chat_template``
    (Qwen3.5 uses it with its own template)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    geometry = {"patch_size": _QWEN3_PATCH, "temporal_patch_size": 2, "merge_size": 2}
    size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    half = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **geometry, **half),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size=dict(size), **geometry, **half),
        chat_template=chat_template,
    )


QWEN3_VL = FamilyBuilder(
    tokenizer=qwen_tokenizer,
    config=_qwen3_vl_config,
    processor=qwen3_vl_processor,
    generation=qwen_generation,
    model_class="Qwen3VLForConditionalGeneration",
    expected=EXPECTED,
)
