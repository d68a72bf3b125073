"""Tiny Gemma 3: sliding-window / global decoder layers, q/k norms, SigLIP features pooled 2x2.

The Gemma tokenizer puts ``<pad> <eos> <bos> <unk>`` at ids 0-3 and prepends BOS; the
chat template folds a system text into the first user turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import greedy_ids, siglip_vision, text_sizes
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "GEMMA3", "GEMMA3_CHAT_TEMPLATE"]

#: google/gemma-3-*-it chat template (system text is folded into the first user turn).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    '{%- set first_user_prefix = "" -%}'
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    '{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}'
    "{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}"
    '{%- else -%}{{ raise_exception("Invalid content type") }}{%- endif -%}'
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"
)

EXPECTED = FamilyExpectations(
    chat="<bos><start_of_turn>user\n<start_of_image>{question}<end_of_turn>\n<start_of_turn>model\n",
    image_token="<image_soft_token>",
    image_tokens={(200, 150): 36, (448, 448): 36},  # 168 px square, 12 x 12 patches pooled 2 x 2
)

#: Gemma 3's text decoder alternates sliding-window and global layers; the tiny one uses a
#: window shorter than its prompts, so the window really cuts the image off in local layers.
_GEMMA3_SLIDING_WINDOW = 64
_GEMMA3_LAYER_PATTERN = ("sliding_attention", "sliding_attention", "full_attention")


def _gemma_tokenizer(spec: TinySpec, trailing: tuple[str, ...], **named: str) -> PreTrainedTokenizerFast:
    """Gemma's ``<pad> <eos> <bos> <unk>`` = ids 0-3, BOS prepended, plus ``trailing`` specials."""
    return make_tokenizer(
        unk="<unk>",
        leading=("<pad>", "<eos>", "<bos>", "<unk>"),
        trailing=trailing,
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens=named,
    )


def _gemma3_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return _gemma_tokenizer(
        spec,
        ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"),
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
        image_token="<image_soft_token>",
    )


def _gemma3_tokens_per_side(spec: TinySpec) -> int:
    return spec.image_size // 14 // 2  # 14-px patches, average-pooled 2x2 (real: 896 px, 4x4 -> 16x16)


def _gemma3_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Gemma3Config

    layer_types = [_GEMMA3_LAYER_PATTERN[i % len(_GEMMA3_LAYER_PATTERN)] for i in range(spec.num_hidden_layers)]
    text = {
        **text_sizes(spec, tokenizer),
        "model_type": "gemma3_text",
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "query_pre_attn_scalar": spec.head_dim,
        "sliding_window": _GEMMA3_SLIDING_WINDOW,
        "layer_types": layer_types,
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        "tie_word_embeddings": True,
    }
    return Gemma3Config(
        text_config=text,
        vision_config=siglip_vision(spec),
        mm_tokens_per_image=_gemma3_tokens_per_side(spec) ** 2,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
        tie_word_embeddings=True,
    )


def _gemma3_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    image_processor = Gemma3ImageProcessor(
        size={"height": spec.image_size, "width": spec.image_size},
        resample=2,  # bilinear, as google/gemma-3-*-it
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=None,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=_gemma3_tokens_per_side(spec) ** 2,
    )


def _gemma3_generation(tokenizer: Any) -> dict[str, Any]:
    return greedy_ids(tokenizer, "<eos>", "<end_of_turn>")


GEMMA3 = FamilyBuilder(
    tokenizer=_gemma3_tokenizer,
    config=_gemma3_config,
    processor=_gemma3_processor,
    generation=_gemma3_generation,
    model_class="Gemma3ForConditionalGeneration",
    expected=EXPECTED,
    image_size=168,
    image_size_multiple=28,
)
