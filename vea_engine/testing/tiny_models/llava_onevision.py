"""Tiny LLaVA-OneVision: a Qwen2 decoder over SigLIP tiles, anyres_max_9 tiling with shrinking.

Reuses the Qwen2 tokenizer (plus ``<image>`` / ``<video>`` placeholders), text config and
generation ids of :mod:`.qwen_vl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import siglip_vision
from .qwen_vl import qwen_generation, qwen_text, qwen_tokenizer
from .spec import FamilyBuilder, FamilyExpectations, TinySpec

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "LLAVA_ONEVISION", "LLAVA_ONEVISION_CHAT_TEMPLATE"]

#: llava-hf/llava-onevision-qwen2-*-hf chat template: ``<|im_start|>user <image>\n{text}<|im_end|>``.
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

EXPECTED = FamilyExpectations(
    chat="<|im_start|>user <image>\n{question}<|im_end|>\n<|im_start|>assistant\n",
    image_token="<image>",
    # 200x150 -> 3x4 tiles = 12 x 16 cells, more than 9 tiles x 1.1^2: shrunk by 1.155 to 10 x 13;
    # 448x448 -> 6x6 tiles (336 px) = 24 x 24 cells shrunk by 2 to 12 x 12; + newlines + 16 base tokens
    image_tokens={(200, 150): 16 + 10 * 14, (448, 448): 16 + 12 * 13},
)


def _onevision_pinpoints(side: int) -> list[list[int]]:
    """llava-onevision's pinpoints: every grid of 1..6 x 1..6 tiles of ``side`` px (rows first)."""
    return [[r * side, c * side] for r in range(1, 7) for c in range(1, 7)]


def _llava_onevision_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return qwen_tokenizer(spec, ("<image>", "<video>"), image_token="<image>", video_token="<video>")


def _llava_onevision_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import LlavaOnevisionConfig

    text = qwen_text(spec, tokenizer, model_type="qwen2", tie_word_embeddings=False)
    return LlavaOnevisionConfig(
        vision_config=siglip_vision(spec),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_onevision_pinpoints(spec.image_size),
        vision_aspect_ratio="anyres_max_9",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )


def _llava_onevision_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    common = {
        "size": {"height": spec.image_size, "width": spec.image_size},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            image_grid_pinpoints=_onevision_pinpoints(spec.image_size), do_pad=True, **common
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(**common),
        num_image_tokens=(spec.image_size // 14) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
    )


LLAVA_ONEVISION = FamilyBuilder(
    tokenizer=_llava_onevision_tokenizer,
    config=_llava_onevision_config,
    processor=_llava_onevision_processor,
    generation=qwen_generation,
    model_class="LlavaOnevisionForConditionalGeneration",
    expected=EXPECTED,
    image_size=56,
    image_size_multiple=2,  # SigLIP takes any side (OneVision's 384 px = 27 patches of 14 px + 6 px)
)
