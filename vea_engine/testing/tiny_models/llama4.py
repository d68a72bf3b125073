"""Tiny Llama 4: chunked-attention RoPE layers between NoPE layers, MoE, tiles + a global view.

The text decoder has Llama 4's layer kinds at a small scale, in Maverick's pattern: RoPE
layers attend within chunks of ``attention_chunk_size`` tokens, NoPE layers in between attend
globally (with the query temperature of long contexts, which starts at ``floor_scale``
tokens, as released: 1 within the tiny prompts), and every other layer is a mixture of
experts; no per-head q/k norm (Maverick has none; Scout's weightless norm would keep the
tiny head dim's logits within +-4, near-uniform attention). The chunk is shorter than the
tiny prompts, so it really cuts them, through the image tokens.

The image processor resizes an image without distortion (never upscaling it past its own
size unless it is smaller than a tile) onto a grid of square tiles, pads it right and
bottom, and adds the whole image squashed to one tile (the global view) when there are
several tiles. The vision tower pixel-shuffles each tile's ``8 x 8`` patches (112-px tiles,
14-px patches) into ``4 x 4`` tokens of 28 px, as the real one makes ``12 x 12`` of a 336-px tile. The prompt writes ``<|tile_x_separator|>`` between
the tiles of a row, ``<|tile_y_separator|>`` after each row and ``<|image|>`` before the
global view; only the ``<|patch|>`` tokens are image features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import greedy_ids, text_sizes
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "LLAMA4", "LLAMA4_CHAT_TEMPLATE"]

#: meta-llama/Llama-4-*-Instruct chat template, user / assistant / system turns (no tool calling).
LLAMA4_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|header_start|>' + message['role'] + '<|header_end|>\n\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|eot|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|header_start|>assistant<|header_end|>\n\n' }}{%- endif %}"
)

EXPECTED = FamilyExpectations(
    chat="<|begin_of_text|><|header_start|>user<|header_end|>\n\n<|image|>{question}<|eot|>"
    "<|header_start|>assistant<|header_end|>\n\n",
    image_token="<|patch|>",
    # 112-px tiles, 4 x 4 tokens each. 200x150 fits 2 x 2 tiles (224 x 224 px, scale 1.12: the smallest upscale);
    # it is not upscaled, only padded, + the global view. 448x448 fits no page of at most 6 tiles unscaled: the
    # smallest downscale (0.5) ties between 2 x 2, 2 x 3 and 3 x 2 tiles, the smallest page wins: 2 x 2 + global.
    image_tokens={(200, 150): (4 + 1) * 16, (448, 448): (4 + 1) * 16},
    split_prompt=True,
)

_PATCH = 14
#: Tiles per image at most (the real processor's ``max_patches``: 16).
_MAX_TILES = 6
#: Tokens per chunk of the RoPE layers: shorter than every tiny prompt with an image.
_CHUNK = 40

_SPECIALS = (
    "<|header_start|>",
    "<|header_end|>",
    "<|eot|>",
    "<|eom|>",
    "<|finetune_right_pad|>",
    "<|image_start|>",
    "<|image_end|>",
    "<|image|>",
    "<|patch|>",
    "<|tile_x_separator|>",
    "<|tile_y_separator|>",
)


def _tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return make_tokenizer(
        unk="<unk>",
        leading=("<|begin_of_text|>", "<|end_of_text|>", "<unk>"),
        trailing=_SPECIALS,
        bos="<|begin_of_text|>",
        eos="<|eot|>",
        pad="<|finetune_right_pad|>",
        model_max_length=spec.max_position_embeddings,
    )


def _config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Llama4Config

    side = spec.image_size // _PATCH
    text = {
        **text_sizes(spec, tokenizer),
        "model_type": "llama4_text",
        "intermediate_size_mlp": spec.intermediate_size,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500_000.0},
        "no_rope_layer_interval": 2,  # NoPE every 2nd layer (Scout: every 4th)
        "attention_chunk_size": _CHUNK,
        "attn_temperature_tuning": True,
        "floor_scale": 8192,
        "attn_scale": 0.1,
        "use_qk_norm": False,
        "num_local_experts": 2,
        "num_experts_per_tok": 1,
        "interleave_moe_layer_step": 2,  # MoE every 2nd layer (Maverick's pattern; Scout: every layer)
        "tie_word_embeddings": False,
    }
    vision_hidden = spec.vision_hidden_size
    vision = {
        "hidden_size": vision_hidden,
        "intermediate_size": 4 * vision_hidden,  # the pixel-shuffled width, as in the real tower
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "image_size": spec.image_size,
        "patch_size": _PATCH,
        "pixel_shuffle_ratio": 0.5,
        "projector_input_dim": spec.vision_intermediate_size,
        "projector_output_dim": spec.vision_intermediate_size,
        "vision_output_dim": spec.vision_intermediate_size,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        "initializer_range": spec.initializer_range,
    }
    if side % 2:
        raise ValueError(f"tiny llama4: image_size={spec.image_size} must be an even number of {_PATCH}-px patches.")
    return Llama4Config(
        text_config=text,
        vision_config=vision,
        boi_token_index=tokenizer.convert_tokens_to_ids("<|image_start|>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<|image_end|>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<|patch|>"),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import Llama4ImageProcessor, Llama4Processor

    image_processor = Llama4ImageProcessor(
        size={"height": spec.image_size, "width": spec.image_size},
        max_patches=_MAX_TILES,
        resize_to_max_canvas=False,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Llama4Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=_PATCH,
        pixel_shuffle_ratio=0.5,
        chat_template=LLAMA4_CHAT_TEMPLATE,
    )


def _generation(tokenizer: Any) -> dict[str, Any]:
    return greedy_ids(tokenizer, "<|eot|>", "<|end_of_text|>", "<|eom|>")


LLAMA4 = FamilyBuilder(
    tokenizer=_tokenizer,
    config=_config,
    processor=_processor,
    generation=_generation,
    model_class="Llama4ForConditionalGeneration",
    expected=EXPECTED,
    image_size=112,
    image_size_multiple=2 * _PATCH,  # whole 2 x 2 patch groups (pixel shuffle 0.5)
)
