"""Tiny Gemma 4: sliding / full layers with their own head sizes, KV-shared layers, per-layer inputs, MoE.

The text decoder has every part of the released models' decoders at once (no released
checkpoint has all of them): sliding-window and full-attention layers (the full ones with a
larger head size, fewer key/value heads and keys doubling as values, ``attention_k_eq_v``,
as in the 26B / 31B), the last half of the layers reusing the keys and values of the last
earlier layer of their kind (``num_kv_shared_layers``, as in E2B / E4B), per-layer input
embeddings (PLE), a mixture-of-experts block beside each MLP (26B-A4B), logit soft-capping
and bidirectional attention among the image tokens in the sliding layers. The window is
shorter than the prompts, so it really cuts the image off in the sliding layers.

The vision tower is Gemma 4's own: variable resolution (the image keeps its aspect ratio
within a budget of ``70 x 3 x 3`` patches of 8 px here; 16 px in the released models),
learned 2-D patch positions, and a pooler averaging ``3 x 3`` patches into one token. No
audio tower (the config leaves it out, as the 26B / 31B do); the processor still carries
the audio feature extractor and the video processor it requires.

The Gemma tokenizer puts ``<pad> <eos> <bos> <unk>`` at ids 0-3; the chat template writes
``<bos>`` and the turns ``<|turn>user ... <turn|>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import greedy_ids, text_sizes
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "GEMMA4", "GEMMA4_CHAT_TEMPLATE"]

#: The user / model turns of google/gemma-4-*-it's chat template (its tool, thinking and
#: system branches left out): an image item is written ``<|image|>``, text trimmed.
GEMMA4_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<|turn>' + role + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] | trim -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}{{- item['text'] | trim -}}"
    "{%- elif item['type'] == 'image' -%}{{- '<|image|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<turn|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|turn>model\n' -}}{%- endif -%}"
)

EXPECTED = FamilyExpectations(
    chat="<bos><|turn>user\n<|image|>{question}<turn|>\n<|turn>model\n",
    image_token="<|image|>",
    # budget 70 tokens = 630 patches of 8 px, sides multiples of 24 px: 200x150 -> 216x168 (9 x 7 tokens);
    # 448x448 -> 192x192 (8 x 8)
    image_tokens={(200, 150): 63, (448, 448): 64},
)

#: Patch side in px (16 in the released models) and the pooler's kernel (3, as released).
_PATCH = 8
_POOL = 3
#: Soft-token budget per image: the smallest the processor accepts (released: 280).
_SOFT_TOKENS = 70
_SLIDING_WINDOW = 48
_LAYER_PATTERN = ("sliding_attention", "sliding_attention", "full_attention")


def _gemma4_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return make_tokenizer(
        unk="<unk>",
        leading=("<pad>", "<eos>", "<bos>", "<unk>"),
        trailing=(
            "<|turn>",
            "<turn|>",
            "<|image>",
            "<image|>",
            "<|image|>",
            "<|audio>",
            "<audio|>",
            "<|audio|>",
            "<|video|>",
        ),
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={
            "boi_token": "<|image>",
            "eoi_token": "<image|>",
            "image_token": "<|image|>",
            "boa_token": "<|audio>",
            "eoa_token": "<audio|>",
            "audio_token": "<|audio|>",
        },
    )


def _layer_types(layers: int) -> tuple[list[str], int]:
    """The layer kinds and the number of KV-shared layers: the last half, when the first half holds both kinds."""
    types = [_LAYER_PATTERN[i % len(_LAYER_PATTERN)] for i in range(layers)]
    types[-1] = "full_attention"  # the model requires it
    shared = layers // 2
    if set(types[: layers - shared]) != set(types):
        shared = 0
    return types, shared


def _gemma4_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Gemma4Config

    layer_types, shared = _layer_types(spec.num_hidden_layers)
    text = {
        **text_sizes(spec, tokenizer),
        "model_type": "gemma4_text",
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "sliding_window": _SLIDING_WINDOW,
        "layer_types": layer_types,
        "rope_parameters": {
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        "global_head_dim": 2 * spec.head_dim,  # full layers: twice the sliding head size (released: 512 vs 256)
        "num_global_key_value_heads": 1,
        "attention_k_eq_v": True,
        "num_kv_shared_layers": shared,
        "hidden_size_per_layer_input": 16,
        "vocab_size_per_layer_input": len(tokenizer),
        "enable_moe_block": True,
        "num_experts": 4,
        "top_k_experts": 2,
        "moe_intermediate_size": spec.intermediate_size // 4,
        "use_bidirectional_attention": "vision",
        "final_logit_softcapping": 30.0,
        "tie_word_embeddings": True,
    }
    vision = {
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "num_key_value_heads": spec.vision_num_attention_heads,
        "head_dim": spec.vision_hidden_size // spec.vision_num_attention_heads,
        "patch_size": _PATCH,
        "pooling_kernel_size": _POOL,
        "position_embedding_size": 512,  # patch coordinates up to 511 (released: 10240)
        "initializer_range": spec.initializer_range,
    }
    return Gemma4Config(
        text_config=text,
        vision_config=vision,
        audio_config=None,
        boi_token_id=tokenizer.convert_tokens_to_ids("<|image>"),
        eoi_token_id=tokenizer.convert_tokens_to_ids("<image|>"),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video|>"),
        boa_token_id=tokenizer.convert_tokens_to_ids("<|audio>"),
        eoa_token_index=tokenizer.convert_tokens_to_ids("<audio|>"),
        audio_token_id=tokenizer.convert_tokens_to_ids("<|audio|>"),
        tie_word_embeddings=True,
    )


def _gemma4_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import Gemma4AudioFeatureExtractor, Gemma4ImageProcessor, Gemma4Processor, Gemma4VideoProcessor

    geometry = {"patch_size": _PATCH, "pooling_kernel_size": _POOL, "max_soft_tokens": _SOFT_TOKENS}
    return Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=Gemma4ImageProcessor(resample=3, **geometry),  # bicubic, as released
        tokenizer=tokenizer,
        video_processor=Gemma4VideoProcessor(**geometry),
        chat_template=GEMMA4_CHAT_TEMPLATE,
        image_seq_length=_SOFT_TOKENS,
    )


def _gemma4_generation(tokenizer: Any) -> dict[str, Any]:
    return greedy_ids(tokenizer, "<eos>", "<turn|>")


GEMMA4 = FamilyBuilder(
    tokenizer=_gemma4_tokenizer,
    config=_gemma4_config,
    processor=_gemma4_processor,
    generation=_gemma4_generation,
    model_class="Gemma4ForConditionalGeneration",
    expected=EXPECTED,
)
