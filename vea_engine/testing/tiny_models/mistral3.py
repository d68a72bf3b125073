"""Tiny Mistral 3 (Mistral Small 3.x): a Pixtral tower at variable resolution, 2x2 patch merger, Mistral decoder.

The processor resizes an image so that its longest side is at most ``size["longest_edge"]``
(``spec.image_size`` here, 1540 in Mistral Small 3.1), rounds both sides *up* to multiples of
``patch * spatial_merge_size`` (28 px) and writes one ``[IMG]`` per merged token, an
``[IMG_BREAK]`` after every token row but the last and ``[IMG_END]`` after it. The tokenizer
keeps the Tekken control tokens at their real ids (``[IMG]`` = 10, ``[IMG_BREAK]`` = 12,
``[IMG_END]`` = 13), so the tiny config's ``image_token_index`` is the real one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import greedy_ids, llama_text
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "MISTRAL3", "MISTRAL3_CHAT_TEMPLATE"]

#: The Mistral Small 3.1 chat template's layout without its default system prompt (which spells
#: today's date): ``<s>[SYSTEM_PROMPT]...[/SYSTEM_PROMPT]`` only when a system message is given,
#: then ``[INST]`` + the user blocks in order (``[IMG]`` per image) + ``[/INST]``.
MISTRAL3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ '[SYSTEM_PROMPT]' + (message['content'] if message['content'] is string "
    "else message['content'][0]['text']) + '[/SYSTEM_PROMPT]' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST]' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for block in message['content'] %}"
    "{% if block['type'] == 'text' %}{{ block['text'] }}"
    "{% elif block['type'] in ['image', 'image_url'] %}{{ '[IMG]' }}"
    "{% else %}{{ raise_exception('Only text and image blocks are supported in message content!') }}{% endif %}"
    "{% endfor %}{% endif %}{{ '[/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ (message['content'] if message['content'] is string else message['content'][0]['text']) + eos_token }}"
    "{% else %}{{ raise_exception('Only system, user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)

#: Patch side of the Pixtral tower (Mistral Small 3.1: 14) and the merger's factor (2): 28-px token cells.
PATCH = 14
MERGE = 2

EXPECTED = FamilyExpectations(
    chat="<s>[INST][IMG]{question}[/INST]",
    image_token="[IMG]",
    # longest side <= 168, sides rounded up to 28 px. 200x150 -> 168x126 -> 6 x 5 cells (168 x 140 px);
    # 448x448 -> 168x168 -> 6 x 6. [IMG_BREAK] / [IMG_END] are other tokens.
    image_tokens={(200, 150): 6 * 5, (448, 448): 6 * 6},
    split_prompt=True,
)

#: The Tekken tokenizer's first 20 control tokens, in id order (``[IMG]`` = 10, ``<pad>`` = 11).
_CONTROL = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
)


def _tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return make_tokenizer(
        unk="<unk>",
        leading=_CONTROL,
        trailing=(),
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "[IMG]"},
    )


def _config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Mistral3Config

    vision = {
        "model_type": "pixtral",
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "image_size": spec.image_size,
        "patch_size": PATCH,
        "hidden_act": "silu",
        "initializer_range": spec.initializer_range,
    }
    text = llama_text(spec, tokenizer, rope_theta=1_000_000_000.0, model_type="mistral", sliding_window=None)
    return Mistral3Config(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=MERGE,
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        multimodal_projector_bias=False,
        tie_word_embeddings=False,
    )


def _processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import PixtralImageProcessor, PixtralProcessor

    image_processor = PixtralImageProcessor(
        size={"longest_edge": spec.image_size},
        patch_size={"height": PATCH, "width": PATCH},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return PixtralProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        chat_template=MISTRAL3_CHAT_TEMPLATE,
    )


MISTRAL3 = FamilyBuilder(
    tokenizer=_tokenizer,
    config=_config,
    processor=_processor,
    generation=greedy_ids,
    model_class="Mistral3ForConditionalGeneration",
    expected=EXPECTED,
    image_size=168,
    image_size_multiple=PATCH * MERGE,
)
