"""Tiny LFM2-VL: a SigLIP2 NaFlex tower, 2x2 pixel unshuffle, and a *hybrid* LFM2 decoder.

The LFM2 decoder mixes short causal convolutions (``conv`` layers, no attention matrix) with
softmax attention (``full_attention``); the tiny one keeps that mix, conv first as in the
released models, so capture must read the attention layers only (:data:`LAYER_TYPES`).

The processor (transformers' ``Lfm2VlImageProcessor``) either resizes a small image to a
multiple of 32 px within ``[min_image_tokens, max_image_tokens]`` tokens (one grid), or --
above ``max_image_tokens * 32**2 * max_pixels_tolerance`` pixels -- squashes it onto a grid of
``tile_size`` tiles (2 to 4 here, 2 to 10 in the released models) plus a thumbnail resized like
a small image. The prompt wraps the image in ``<|image_start|>``/``<|image_end|>``, precedes
each tile with ``<|img_row_R_col_C|>`` and the thumbnail with ``<|img_thumbnail|>``; only the
``<image>`` tokens are image features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import greedy_ids, text_sizes
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "LAYER_TYPES", "LFM2_VL", "LFM2_VL_CHAT_TEMPLATE"]

#: The LFM2-VL chat template's layout: ``<|startoftext|><|im_start|>user\n<image>{text}<|im_end|>\n``
#: then ``<|im_start|>assistant\n``.
LFM2_VL_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: Decoder layer kinds of the tiny model: LFM2's first six (its 16 layers have attention at 2, 5, 8, 10,
#: 12 and 14): attention at 2 and 5 only.
LAYER_TYPES = ("conv", "conv", "full_attention", "conv", "conv", "full_attention")

#: Pixels per patch and the unshuffle factor: 32-px token cells.
PATCH = 16
FACTOR = 2
#: Tiles per image: 2 to 4 (released: 2 to 10).
MIN_TILES, MAX_TILES = 2, 4

EXPECTED = FamilyExpectations(
    chat="<|startoftext|><|im_start|>user\n<image>{question}<|im_end|>\n<|im_start|>assistant\n",
    image_token="<image>",
    # 128-px tiles of 4 x 4 tokens, thumbnails of at most 16 tokens; split above 16 * 32**2 * 1.5 = 24,576 px.
    # 200x150 (160 x 192 after rounding: 30,720 px): split, 4:3 -> 2 x 2 tiles; thumbnail scaled by
    # sqrt(30,000 / 16,384): 96 x 128 px = 3 x 4 tokens. 448x448: 2 x 2 tiles, thumbnail 128 x 128 = 4 x 4.
    image_tokens={(200, 150): 4 * 16 + 3 * 4, (448, 448): 4 * 16 + 4 * 4},
    split_prompt=True,
)

_GRID_TAGS = tuple(f"<|img_row_{r}_col_{c}|>" for r in range(1, MAX_TILES + 1) for c in range(1, MAX_TILES + 1))


def _tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return make_tokenizer(
        unk="<|endoftext|>",
        leading=("<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        trailing=("<image>", *_GRID_TAGS, "<|img_thumbnail|>", "<|image_start|>", "<|image_end|>"),
        bos="<|startoftext|>",
        eos="<|im_end|>",
        pad="<|pad|>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "<image>"},
    )


def _config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Lfm2VlConfig

    side = spec.image_size // PATCH  # patches per tile side: the position-embedding grid
    vision = {
        "model_type": "siglip2_vision_model",
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "patch_size": PATCH,
        "num_patches": side * side,
        "vision_use_head": False,
        "initializer_range": spec.initializer_range,
    }
    text = {
        **text_sizes(spec, tokenizer),
        "model_type": "lfm2",
        "layer_types": list(LAYER_TYPES)[: spec.num_hidden_layers],
        "conv_L_cache": 3,
        "block_auto_adjust_ff_dim": False,
        "norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "tie_word_embeddings": False,
    }
    text["layer_types"] += ["conv"] * (spec.num_hidden_layers - len(text["layer_types"]))
    return Lfm2VlConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        downsample_factor=FACTOR,
        projector_hidden_size=spec.hidden_size,
        projector_use_layernorm=True,
        tie_word_embeddings=False,
    )


def _processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import Lfm2VlImageProcessor, Lfm2VlProcessor

    tile_tokens = (spec.image_size // PATCH // FACTOR) ** 2
    image_processor = Lfm2VlImageProcessor(
        tile_size=spec.image_size,
        encoder_patch_size=PATCH,
        downsample_factor=FACTOR,
        min_tiles=MIN_TILES,
        max_tiles=MAX_TILES,
        min_image_tokens=4,
        max_image_tokens=tile_tokens,
        max_pixels_tolerance=1.5,
        do_image_splitting=True,
        use_thumbnail=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Lfm2VlProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=LFM2_VL_CHAT_TEMPLATE)


LFM2_VL = FamilyBuilder(
    tokenizer=_tokenizer,
    config=_config,
    processor=_processor,
    generation=lambda tokenizer: greedy_ids(tokenizer, "<|im_end|>"),
    model_class="Lfm2VlForConditionalGeneration",
    expected=EXPECTED,
    image_size=128,
    image_size_multiple=PATCH * FACTOR,
)
