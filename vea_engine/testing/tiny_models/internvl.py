"""Tiny InternVL (transformers-native "-hf" checkpoints): a Qwen3 decoder over InternViT tiles.

Dynamic tiling (up to :data:`_INTERNVL_MAX_TILES` tiles plus a thumbnail), pixel shuffle
0.5; ``<IMG_CONTEXT>`` marks the image. Reuses the Qwen2 tokenizer (plus InternVL's image
tokens), text config and generation ids of :mod:`.qwen_vl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .qwen_vl import qwen_generation, qwen_text, qwen_tokenizer
from .spec import FamilyBuilder, FamilyExpectations, TinySpec

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "INTERNVL", "INTERNVL_CHAT_TEMPLATE"]

#: OpenGVLab/InternVL3_5-*-HF chat template for image + text turns: ``<IMG_CONTEXT>`` marks the image.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)

EXPECTED = FamilyExpectations(
    chat="<|im_start|>user\n<IMG_CONTEXT>\n{question}<|im_end|>\n<|im_start|>assistant\n",
    image_token="<IMG_CONTEXT>",
    # 4:3 ties 1x1 and 2x2; the image's area decides for 2x2: 4 tiles + thumbnail, 4 x 4 tokens each
    image_tokens={(200, 150): 5 * 16, (448, 448): 5 * 16},
)

#: At most this many tiles per image (real: 12), plus a thumbnail when there is more than one.
_INTERNVL_MAX_TILES = 4


def _internvl_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return qwen_tokenizer(
        spec,
        ("<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
        start_image_token="<img>",
        end_image_token="</img>",
        context_image_token="<IMG_CONTEXT>",
        video_token="<video>",
    )


def _internvl_seq_length(spec: TinySpec) -> int:
    return (spec.image_size // 14 // 2) ** 2  # 14-px patches, pixel shuffle 0.5


def _internvl_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import InternVLConfig

    # InternVL3.5: a Qwen3 decoder (per-head q/k RMSNorm)
    text = qwen_text(spec, tokenizer, model_type="qwen3", tie_word_embeddings=False)
    vision = {
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "image_size": [spec.image_size, spec.image_size],
        "patch_size": [14, 14],
        "hidden_act": "gelu",
        "norm_type": "layer_norm",
        "use_qk_norm": False,
        "use_mean_pooling": True,
        "initializer_range": spec.initializer_range,
    }
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=_internvl_seq_length(spec),
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def _internvl_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    size = {"height": spec.image_size, "width": spec.image_size}
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    return InternVLProcessor(
        # crop_to_patches=False as in the released -hf configs: InternVLProcessor asks for tiles itself
        image_processor=GotOcr2ImageProcessor(
            size=size, crop_to_patches=False, min_patches=1, max_patches=_INTERNVL_MAX_TILES, **imagenet
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=dict(size), **imagenet),
        image_seq_length=_internvl_seq_length(spec),
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )


INTERNVL = FamilyBuilder(
    tokenizer=_internvl_tokenizer,
    config=_internvl_config,
    processor=_internvl_processor,
    generation=qwen_generation,
    model_class="InternVLForConditionalGeneration",
    expected=EXPECTED,
    image_size=112,
    image_size_multiple=28,
)
