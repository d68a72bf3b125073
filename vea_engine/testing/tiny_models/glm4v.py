"""Tiny GLM-4.1V, GLM-4.5V and GLM-4.6V: GLM tokenizer specials, partial 3D-RoPE decoder, Qwen-like vision.

The three share the tokenizer, chat template, processor geometry (14-px patches, 2x2 merge,
2-frame temporal patches; ``Glm4vImageProcessor``, whose pixel budget counts both temporal
frames) and generation ids. They differ in the decoder: GLM-4.1V (``glm4v``) is dense,
GLM-4.5V (``glm4v_moe``) a mixture of experts after its first dense layer, and GLM-4.6V
(``glm46v``) takes either text config (here the dense one) with its own processor class.
Every decoder layer is softmax attention with q/k/v biases, half the head dimension rotated
by the (t, h, w) M-RoPE, and extra norms after attention and MLP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .common import text_sizes
from .qwen_vl import mrope_section
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "GLM46V", "GLM4V", "GLM4V_CHAT_TEMPLATE", "GLM4V_MOE", "GLM_SPECIALS"]

#: The GLM-4 tokenizer's special tokens, in id order (real ids 151329 ... 151344 in GLM-4.1V).
GLM_SPECIALS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
)

#: zai-org/GLM-4.1V-9B-Thinking's chat template, verbatim (revision 3c1471e; see
#: tests/fixtures/real_configs/SOURCES.md): ``[gMASK]<sop>``, role tags, each image as
#: ``<|begin_of_image|><|image|><|end_of_image|>`` before the text, and the assistant tag.
GLM4V_CHAT_TEMPLATE = (
    "[gMASK]<sop>\n"
    "{%- for msg in messages %}\n"
    "    {%- if msg.role == 'system' %}\n"
    "<|system|>\n"
    "{{ msg.content }}\n"
    "    {%- elif msg.role == 'user' %}\n"
    "<|user|>{{ '\\n' }}\n"
    "\n"
    "        {%- if msg.content is string %}\n"
    "{{ msg.content }}\n"
    "        {%- else %}\n"
    "            {%- for item in msg.content %}\n"
    "                {%- if item.type == 'video' or 'video' in item %}\n"
    "<|begin_of_video|><|video|><|end_of_video|>\n"
    "                {%- elif item.type == 'image' or 'image' in item %}\n"
    "<|begin_of_image|><|image|><|end_of_image|>\n"
    "                {%- elif item.type == 'text' %}\n"
    "{{ item.text }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "    {%- elif msg.role == 'assistant' %}\n"
    "        {%- if msg.metadata %}\n"
    "<|assistant|>{{ msg.metadata }}\n"
    "{{ msg.content }}\n"
    "        {%- else %}\n"
    "<|assistant|>\n"
    "{{ msg.content }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{% if add_generation_prompt %}<|assistant|>\n"
    "{% endif %}"
)

EXPECTED = FamilyExpectations(
    chat="[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{question}<|assistant|>\n",
    image_token="<|image|>",
    # Glm4vImageProcessor: sides rounded to multiples of 28 (200x150 -> 196x140), 14-px patches; the budget
    # counts both temporal frames, so 448x448 needs max 2 * 448 * 448 (see _glm_processor); 2x2 patches per token.
    image_grids={(200, 150): (1, 10, 14), (448, 448): (1, 32, 32)},
    image_tokens={(200, 150): 10 * 14 // 4, (448, 448): 32 * 32 // 4},
)

_GLM_PATCH = 14


def _glm_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    """The GLM-4 tokenizer: no BOS (the template writes ``[gMASK]<sop>``), ``<|endoftext|>`` ends and pads."""
    return make_tokenizer(
        unk="<unk>",  # real GLM has none (byte-level BPE); ours maps unknown symbols to id 0
        leading=("<unk>",),
        trailing=GLM_SPECIALS,
        bos=None,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
    )


def _special_ids(tokenizer: Any) -> dict[str, int]:
    """The image/video token ids a GLM-V config carries."""
    names = {
        "image_token_id": "<|image|>",
        "video_token_id": "<|video|>",
        "image_start_token_id": "<|begin_of_image|>",
        "image_end_token_id": "<|end_of_image|>",
        "video_start_token_id": "<|begin_of_video|>",
        "video_end_token_id": "<|end_of_video|>",
    }
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in names.items()}


def _glm_text(spec: TinySpec, tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """A GLM-4 decoder config: half of each head rotated by M-RoPE (real: [8, 12, 12] of 64 rotated dims)."""
    text = {
        **text_sizes(spec, tokenizer),
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10_000.0,
            "partial_rotary_factor": 0.5,
            "mrope_section": mrope_section(spec.head_dim // 2),
        },
        **extra,
    }
    del text["head_dim"]  # GLM-V text configs derive it (hidden_size / heads)
    return text


def _glm_vision(spec: TinySpec) -> dict[str, Any]:
    return {
        "depth": spec.vision_num_hidden_layers,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_attention_heads,
        "out_hidden_size": spec.hidden_size,
        "hidden_act": "silu",
        "patch_size": _GLM_PATCH,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "image_size": 8 * _GLM_PATCH,  # learned position embeddings for an 8 x 8 patch grid (real: 24 x 24)
        "initializer_range": spec.initializer_range,
    }


def _glm_config(class_name: str, **text_extra: Any) -> Callable[[TinySpec, Any], PreTrainedConfig]:
    def make(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
        import transformers

        cls = getattr(transformers, class_name)
        return cls(
            text_config=_glm_text(spec, tokenizer, **text_extra),
            vision_config=_glm_vision(spec),
            tie_word_embeddings=False,
            **_special_ids(tokenizer),
        )

    return make


def _glm_processor(prefix: str) -> Callable[[TinySpec, Any], ProcessorMixin]:
    def make(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
        import transformers

        geometry = {"patch_size": _GLM_PATCH, "temporal_patch_size": 2, "merge_size": 2}
        # The budget counts both temporal frames of an image: [min, max] image pixels -> twice that here.
        size = {"shortest_edge": 2 * spec.min_pixels, "longest_edge": 2 * spec.max_pixels}
        image_processor = getattr(transformers, f"{prefix}ImageProcessor")(size=size, **geometry)
        video_processor = getattr(transformers, f"{prefix}VideoProcessor")(size=dict(size), **geometry)
        return getattr(transformers, f"{prefix}Processor")(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=GLM4V_CHAT_TEMPLATE,
        )

    return make


def _glm_generation(tokenizer: Any) -> dict[str, Any]:
    """Greedy generation ids of GLM-V: stop at ``<|endoftext|>``, ``<|user|>`` or ``<|observation|>``."""
    return {
        "eos_token_id": [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")],
        "pad_token_id": tokenizer.pad_token_id,
    }


def _glm_builder(config: Callable[[TinySpec, Any], PreTrainedConfig], prefix: str, model_class: str) -> FamilyBuilder:
    return FamilyBuilder(
        tokenizer=_glm_tokenizer,
        config=config,
        processor=_glm_processor(prefix),
        generation=_glm_generation,
        model_class=model_class,
        expected=EXPECTED,
    )


GLM4V = _glm_builder(_glm_config("Glm4vConfig"), "Glm4v", "Glm4vForConditionalGeneration")
#: GLM-4.5V: the first layer dense (as the real ``first_k_dense_replace=1``), the others 4 routed experts + 1 shared.
GLM4V_MOE = _glm_builder(
    _glm_config(
        "Glm4vMoeConfig",
        moe_intermediate_size=32,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        attention_bias=True,
    ),
    "Glm4v",
    "Glm4vMoeForConditionalGeneration",
)
GLM46V = _glm_builder(_glm_config("Glm46VConfig"), "Glm46V", "Glm46VForConditionalGeneration")
