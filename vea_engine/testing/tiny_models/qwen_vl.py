"""Tiny Qwen2-VL and Qwen2.5-VL: Qwen2 tokenizer specials, M-RoPE decoder, dynamic-resolution vision.

Both share the tokenizer, chat template, processor geometry (14-px patches, 2x2 merge,
2-frame temporal patches) and generation ids; they differ in the vision tower (Qwen2.5-VL:
window attention with one global block). The Qwen2 tokenizer, text config and generation
ids here are reused by :mod:`.qwen3_vl`, :mod:`.llava_onevision` and :mod:`.internvl`, the
template's content loop by :mod:`.qwen3_vl`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .common import text_sizes
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "QWEN2_5_VL", "QWEN2_VL", "QWEN_CHAT_TEMPLATE", "QWEN_CONTENT_LOOP", "QWEN_SPECIALS"]

#: The Qwen2 tokenizer's special tokens, in id order.
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: The Qwen-VL templates' loop over one message's content list: vision placeholders (numbered
#: when ``add_vision_id``; counters set at the template's start) and text, in order. Qwen3-VL's
#: template (:mod:`.qwen3_vl`) renders content with the same loop.
QWEN_CONTENT_LOOP = (
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}"
)

#: The Qwen2-VL / Qwen2.5-VL instruct chat template (default system prompt when none is given).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}" + QWEN_CONTENT_LOOP + "<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Qwen2-VL and Qwen2.5-VL (same processor, same template).
EXPECTED = FamilyExpectations(
    chat=(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    image_token="<|image_pad|>",
    # smart_resize to multiples of 28 (200x150 -> 196x140), 14 px patches -> image_grid_thw;
    # every 2 x 2 patches merge into one token.
    image_grids={(200, 150): (1, 10, 14), (448, 448): (1, 32, 32)},
    image_tokens={(200, 150): 10 * 14 // 4, (448, 448): 32 * 32 // 4},
)


def qwen_tokenizer(spec: TinySpec, extra: tuple[str, ...] = (), **named: str) -> PreTrainedTokenizerFast:
    """The Qwen2 tokenizer: no BOS, ``<|im_end|>`` ends a turn, ``<|endoftext|>`` pads.

    ``extra`` special tokens follow the Qwen2 ones (LLaVA-OneVision's ``<image>``, InternVL's
    ``<IMG_CONTEXT>``...); ``named`` exposes some as attributes (``image_token="<image>"``).
    """
    return make_tokenizer(
        unk="<unk>",  # real Qwen has none (byte-level BPE); ours maps unknown symbols to id 0
        leading=("<unk>",),
        trailing=(*QWEN_SPECIALS, *extra),
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens=named,
    )


def qwen_special_ids(tokenizer: Any) -> dict[str, int]:
    """The image/video/vision-boundary token ids a Qwen-VL config carries."""
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in (
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        )
    }
    return ids


def mrope_section(head_dim: int) -> list[int]:
    """M-RoPE split of the ``head_dim / 2`` rotary frequencies into (t, h, w).

    Matches Qwen's ``[16, 24, 24]`` for ``head_dim = 128``; ``[2, 3, 3]`` for 16.
    """
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def qwen_text(spec: TinySpec, tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """A Qwen2-style decoder config over :func:`qwen_tokenizer`: SiLU, RMSNorm eps 1e-6, no sliding window.

    Default RoPE with theta 1e6 and ``<|endoftext|>`` as BOS id. Shared by Qwen2-VL / Qwen2.5-VL
    (:func:`_qwen2_vl_text`), Qwen3-VL, LLaVA-OneVision (Qwen2) and InternVL (Qwen3);
    ``extra`` adds or overrides fields.
    """
    return {
        **text_sizes(spec, tokenizer),
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        **extra,
    }


def _qwen2_vl_text(spec: TinySpec, tokenizer: Any) -> dict[str, Any]:
    """The Qwen2-VL / Qwen2.5-VL text decoder config fields (M-RoPE, every layer full attention)."""
    text = qwen_text(
        spec,
        tokenizer,
        max_window_layers=spec.num_hidden_layers,
        # M-RoPE: the rotary frequencies split into (temporal, height, width) sections.
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": mrope_section(spec.head_dim),
        },
    )
    del text["head_dim"]  # Qwen2-VL's text configs derive it (hidden_size / heads) and do not store it
    return text


def _qwen2_vl_vision(spec: TinySpec) -> dict[str, Any]:
    if spec.vision_intermediate_size % spec.vision_hidden_size:
        raise ValueError(
            f"tiny qwen2_vl: vision_intermediate_size={spec.vision_intermediate_size} must be a multiple of "
            f"vision_hidden_size={spec.vision_hidden_size} (Qwen2-VL's vision MLP width is an integer mlp_ratio)."
        )
    return {
        "depth": spec.vision_num_hidden_layers,
        "embed_dim": spec.vision_hidden_size,
        "hidden_size": spec.hidden_size,  # the merger projects into the text width
        "mlp_ratio": spec.vision_intermediate_size // spec.vision_hidden_size,
        "num_heads": spec.vision_num_attention_heads,
        "hidden_act": "quick_gelu",
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "initializer_range": spec.initializer_range,
    }


def _qwen2_5_vl_vision(spec: TinySpec) -> dict[str, Any]:
    depth = spec.vision_num_hidden_layers
    return {
        "depth": depth,
        "hidden_size": spec.vision_hidden_size,
        "out_hidden_size": spec.hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_attention_heads,
        "hidden_act": "silu",
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        # Windows of 112 px = 4x4 merged tokens (as in the real model); the last block of
        # the tower attends globally, the others within windows (real: every 8th block).
        "window_size": 112,
        "fullatt_block_indexes": [depth - 1],
        "initializer_range": spec.initializer_range,
    }


def _qwen_config(
    prefix: str, vision: Callable[[TinySpec], dict[str, Any]]
) -> Callable[[TinySpec, Any], PreTrainedConfig]:
    def make(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
        import transformers

        cls = getattr(transformers, f"{prefix}Config")
        return cls(
            text_config=_qwen2_vl_text(spec, tokenizer),
            vision_config=vision(spec),
            tie_word_embeddings=False,
            **qwen_special_ids(tokenizer),
        )

    return make


def _qwen_processor(prefix: str) -> Callable[[TinySpec, Any], ProcessorMixin]:
    def make(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
        import transformers
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        geometry = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
        size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
        image_processor = Qwen2VLImageProcessor(size=size, **geometry)
        video_processor = Qwen2VLVideoProcessor(size=dict(size), cap_pixels_per_frame=True, **geometry)
        cls = getattr(transformers, f"{prefix}Processor")
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=QWEN_CHAT_TEMPLATE,
        )

    return make


def qwen_generation(tokenizer: Any) -> dict[str, Any]:
    """Greedy generation ids of Qwen2-based chat models: stop at ``<|im_end|>`` or ``<|endoftext|>``."""
    return {
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": [
            tokenizer.convert_tokens_to_ids("<|im_end|>"),
            tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        ],
        "pad_token_id": tokenizer.pad_token_id,
    }


def _qwen2_builder(prefix: str, vision: Callable[[TinySpec], dict[str, Any]]) -> FamilyBuilder:
    """Qwen2-VL or Qwen2.5-VL: all shared but the vision tower; transformers classes ``{prefix}Config`` etc."""
    return FamilyBuilder(
        tokenizer=qwen_tokenizer,
        config=_qwen_config(prefix, vision),
        processor=_qwen_processor(prefix),
        generation=qwen_generation,
        model_class=f"{prefix}ForConditionalGeneration",
        expected=EXPECTED,
    )


QWEN2_VL = _qwen2_builder("Qwen2VL", _qwen2_vl_vision)
QWEN2_5_VL = _qwen2_builder("Qwen2_5_VL", _qwen2_5_vl_vision)
