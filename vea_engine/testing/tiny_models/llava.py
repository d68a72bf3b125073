"""Tiny LLaVA-1.5: a Llama decoder over a CLIP tower's patch features (CLS dropped, layer -2).

The Llama-style tokenizer (``<unk> <s> </s>`` first, ``<image> <pad>`` last) and the CLIP
config / processor parts here are reused by :mod:`.llava_next`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import CLIP_PATCH, clip_vision, greedy_ids, llama_text
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "LLAVA", "LLAVA_CHAT_TEMPLATE"]

#: The llava-hf LLaVA-1.5 chat template: ``USER: <image>\n{text} ASSISTANT:``.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' ' }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

EXPECTED = FamilyExpectations(
    chat="USER: <image>\n{question} ASSISTANT:",
    image_token="<image>",
    image_tokens={(200, 150): 36, (448, 448): 36},  # 84 px crop, 14 px patches: 6 x 6
)


def llava_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    """The Llama tokenizer of llava-hf checkpoints: BOS ``<s>`` prepended, ``<image>`` and ``<pad>`` last."""
    return make_tokenizer(
        unk="<unk>",
        leading=("<unk>", "<s>", "</s>"),
        trailing=("<image>", "<pad>"),
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "<image>"},
    )


def clip_llava_config(spec: TinySpec, tokenizer: Any, text: dict[str, Any]) -> dict[str, Any]:
    """LLaVA-1.5 / LLaVA-NeXT config fields: CLIP layer -2 features, CLS dropped, GELU projector into ``text``."""
    side = spec.image_size // CLIP_PATCH
    return {
        "vision_config": clip_vision(spec),
        "text_config": text,
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "image_seq_length": side * side,
        "projector_hidden_act": "gelu",
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
        "multimodal_projector_bias": True,
        "tie_word_embeddings": False,
    }


def clip_llava_processor(
    processor_class: Any,
    image_processor_class: Any,
    spec: TinySpec,
    tokenizer: Any,
    chat_template: str,
    **image_kwargs: Any,
) -> ProcessorMixin:
    """A LLaVA-1.5 / LLaVA-NeXT processor: shortest edge to ``spec.image_size``, square crops, 14-px patches."""
    image_processor = image_processor_class(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        **image_kwargs,
    )
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=CLIP_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, dropped again by the "default" strategy
        chat_template=chat_template,
    )


def _llava_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import LlavaConfig

    return LlavaConfig(**clip_llava_config(spec, tokenizer, llama_text(spec, tokenizer, rope_theta=10_000.0)))


def _llava_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import CLIPImageProcessor, LlavaProcessor

    return clip_llava_processor(
        LlavaProcessor, CLIPImageProcessor, spec, tokenizer, LLAVA_CHAT_TEMPLATE, do_resize=True, do_center_crop=True
    )


LLAVA = FamilyBuilder(
    tokenizer=llava_tokenizer,
    config=_llava_config,
    processor=_llava_processor,
    generation=greedy_ids,
    model_class="LlavaForConditionalGeneration",
    expected=EXPECTED,
    image_size=84,
)
