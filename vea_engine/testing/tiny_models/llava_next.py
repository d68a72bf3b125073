"""Tiny LLaVA-NeXT (v1.6, Mistral): anyres tiling into CLIP tiles, unpadding and row newlines.

Reuses the Llama-style tokenizer and the CLIP config / processor parts of :mod:`.llava`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import greedy_ids, llama_text
from .llava import clip_llava_config, clip_llava_processor, llava_tokenizer
from .spec import FamilyBuilder, FamilyExpectations, TinySpec

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, ProcessorMixin

__all__ = ["EXPECTED", "LLAVA_NEXT", "LLAVA_NEXT_CHAT_TEMPLATE"]

#: llava-hf/llava-v1.6-mistral-7b-hf chat template: ``[INST] <image>\n{text} [/INST]``.
LLAVA_NEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'][0]['text'] + '</s> '}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)

EXPECTED = FamilyExpectations(
    chat="[INST] <image>\n{question} [/INST]",
    image_token="<image>",
    # 56-px tiles of 4 x 4 cells + 16 base tokens. 200x150 -> 2x2 tiles (8 x 8 cells), 4:3 unpadded to 6 rows
    # (+1 newline each); 448x448 -> 2x2 tiles, square: 8 rows of 8 cells + newline
    image_tokens={(200, 150): 16 + 6 * 9, (448, 448): 16 + 8 * 9},
)

#: llava-v1.6's pinpoints as multiples of the tile side: 1x2, 2x1, 2x2, 3x1, 1x3 tiles.
_LLAVA_NEXT_GRIDS = ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))


def _llava_next_pinpoints(side: int) -> list[list[int]]:
    return [[r * side, c * side] for r, c in _LLAVA_NEXT_GRIDS]


def _llava_next_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import LlavaNextConfig

    text = llama_text(spec, tokenizer, rope_theta=1_000_000.0, model_type="mistral", sliding_window=None)
    return LlavaNextConfig(
        **clip_llava_config(spec, tokenizer, text), image_grid_pinpoints=_llava_next_pinpoints(spec.image_size)
    )


def _llava_next_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    return clip_llava_processor(
        LlavaNextProcessor,
        LlavaNextImageProcessor,
        spec,
        tokenizer,
        LLAVA_NEXT_CHAT_TEMPLATE,
        image_grid_pinpoints=_llava_next_pinpoints(spec.image_size),
        do_pad=True,
    )


LLAVA_NEXT = FamilyBuilder(
    tokenizer=llava_tokenizer,
    config=_llava_next_config,
    processor=_llava_next_processor,
    generation=greedy_ids,
    model_class="LlavaNextForConditionalGeneration",
    expected=EXPECTED,
    image_size=56,
)
