"""Tiny random-weight checkpoints of real transformers VLM architectures, saved like a user's.

Each builder makes a real ``*ForConditionalGeneration`` model (Qwen2-VL, Qwen2.5-VL,
LLaVA-1.5, Gemma 3, LLaVA-NeXT, Qwen3-VL, LLaVA-OneVision, Idefics3, SmolVLM, InternVL,
PaliGemma) with a few-layer text decoder and vision tower, a processor (offline
tokenizer with the family's special tokens, the family's own image/video processor, its
chat template) and a greedy generation config, and saves them to a folder laid out
exactly like a downloaded checkpoint::

    config.json  generation_config.json  model.safetensors
    tokenizer.json  tokenizer_config.json  chat_template.jinja
    processor_config.json (processor, image and video processor settings)
    VEA_TINY_MODEL.json   <- {"family", "builder_version", "seed", "overrides"}, written last

so they load through the user code path::

    AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True)
    AutoProcessor.from_pretrained(folder, local_files_only=True)

Nothing is downloaded. The tokenizer is a WordPiece model over a small lower-case
English vocabulary plus single letters and digits (with ``##`` continuations), so any
English question encodes (out-of-vocabulary words are spelled letter by letter,
non-ASCII symbols become the unknown token) and decodes to readable, space-separated
words. Weights are random but deterministic in ``seed`` and initialised with a large
standard deviation (0.2) so attention rows are clearly non-uniform.

The answers of these models are meaningless: they exist to exercise the real
architectures (GQA, M-RoPE, window attention, sliding-window and bidirectional-image
masks, prefix-LM masks, q/k norms, CLIP feature selection, anyres tiling and unpadding,
image splitting, pixel shuffle, processor token expansion) in tests and benchmarks.
Image grids are kept small (tens of tokens per image) so every model builds in seconds.

SmolVLM's processor needs the ``num2words`` package (:data:`FAMILY_REQUIREMENTS`);
without it that family is skipped by :func:`build_tiny_models`.

Adding a family = one :class:`FamilyBuilder` in :data:`_BUILDERS`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = [
    "BUILDER_VERSION",
    "FAMILIES",
    "FAMILY_REQUIREMENTS",
    "IMAGE_SIZES",
    "MARKER_NAME",
    "TinySpec",
    "available_families",
    "build_tiny_model",
    "build_tiny_models",
    "missing_requirements",
    "read_marker",
    "tiny_config",
    "tiny_processor",
]

log = logging.getLogger(__name__)

#: Bump whenever a change here changes what is written (weights, configs, tokenizer...);
#: :func:`build_tiny_models` then rebuilds cached folders.
BUILDER_VERSION = 3
#: The marker file written last into every folder built here.
MARKER_NAME = "VEA_TINY_MODEL.json"

# ---------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------

#: Whole-word entries of the tokenizer (lower case). Anything else is spelled with letters.
_WORDS: tuple[str, ...] = tuple(
    """
    a about above across after again against all almost along also always am an and animal another answer any
    anything are area around as ask assistant at away back background bag ball be because bed been before behind
    being below beside best between big bird black blue board boat body book both bottle bottom box boy brown
    building bus but by cake can car card cat center chair child circle city clock close code color colour
    computer could count cup dark date day describe did do does dog door down each eat either empty end even
    every eye face far few field find first five floor food for form four from front full gate get girl give go
    good grass gray green grey ground group had hair half hand has have he head helpful her here high him his
    hold horse house how i if image in inside into invoice is it its just keep kind kitchen know label large
    last left less letter light like line little long look lot low made make man many may me memo might more
    most much must my name near need next nine no none not note nothing number object of off on one only open
    or orange other our out outside over page paper part people person phone picture pin pink place plate
    please point purple question receipt rectangle red ref report right road room round said same say scene
    screen see serial seven she shape shirt show side sign six size sky small so some something square stand
    still street such system table take tell ten text than that the their them then there these they thing
    this those three through time to top total tree triangle two under up us use user very wall was water way
    we wear wearing were what when where which white who why will window with woman word would written yellow
    yes you your zero
    """.split()
)
#: Suffix continuations that keep common inflections to one extra token.
_SUFFIXES: tuple[str, ...] = ("s", "es", "ed", "ing", "er", "est", "ly", "ion", "al", "en")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
#: One pre-token: a newline, a run of letters/digits, or one other visible symbol.
_PRE_TOKEN_PATTERN = r"\n|[a-z0-9]+|[^\sa-z0-9]"


def _base_vocabulary(leading: Iterable[str]) -> dict[str, int]:
    """Token -> id: ``leading`` special tokens first, then words, letters, digits, punctuation."""
    entries = [*leading, "\n", *_PUNCTUATION, *_LETTERS, *_DIGITS]
    entries += [f"##{c}" for c in _LETTERS + _DIGITS] + [f"##{s}" for s in _SUFFIXES]
    entries += list(_WORDS)
    vocab: dict[str, int] = {}
    for token in entries:
        vocab.setdefault(token, len(vocab))
    return vocab


def _make_tokenizer(
    *,
    unk: str,
    leading: tuple[str, ...],
    trailing: tuple[str, ...],
    bos: str | None,
    eos: str,
    pad: str,
    model_max_length: int,
    extra_special_tokens: Mapping[str, str] | None = None,
    add_bos: bool = True,
) -> PreTrainedTokenizerFast:
    """An offline WordPiece tokenizer wrapped in ``PreTrainedTokenizerFast``.

    Args:
        unk: the unknown token (must be in ``leading`` or ``trailing``).
        leading: special tokens given the lowest ids (e.g. LLaVA's ``<unk> <s> </s>``).
        trailing: special tokens appended after the regular vocabulary (e.g. Qwen's
            ``<|endoftext|>`` ... ``<|video_pad|>``, LLaVA's ``<image> <pad>``), in id order.
        bos: the BOS token; prepended to every encoded text (Llama style) unless ``add_bos``
            is False (the processor or template inserts it). None: no BOS token at all.
        eos, pad: end-of-sequence and padding tokens.
        model_max_length: the tokenizer's maximum length.
        extra_special_tokens: named special tokens exposed as attributes (``image_token``).

    Returns:
        The tokenizer, padding on the left.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = _base_vocabulary(leading)
    wordpiece = models.WordPiece(vocab, unk_token=unk, continuing_subword_prefix="##", max_input_chars_per_word=64)
    backend = Tokenizer(wordpiece)
    backend.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_PRE_TOKEN_PATTERN), behavior="removed", invert=True)
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    specials = [AddedToken(t, special=True, normalized=False) for t in (*leading, *trailing)]
    backend.add_special_tokens(specials)
    if len(backend.get_vocab()) != len(vocab) + len(trailing):
        raise RuntimeError("tiny tokenizer: special tokens collide with regular vocabulary entries.")
    if bos is not None and add_bos:
        bos_id = backend.token_to_id(bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, bos_id)]
        )
    named = {"unk_token": unk, "eos_token": eos, "pad_token": pad}
    if bos is not None:
        named["bos_token"] = bos
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side="left",
        model_max_length=model_max_length,
        extra_special_tokens=dict(extra_special_tokens or {}),
        **named,
    )


# ---------------------------------------------------------------------------------------
# Specification and overrides
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinySpec:
    """Sizes of one tiny checkpoint; every field can be overridden by keyword.

    Attributes:
        hidden_size: text hidden size ``D``.
        num_hidden_layers: text decoder layers.
        num_attention_heads: query heads ``H``; ``head_dim = D / H``.
        num_key_value_heads: key/value heads (GQA when fewer than ``H``).
        intermediate_size: text MLP width.
        max_position_embeddings: text context length (also the tokenizer's max length).
        vision_hidden_size: vision tower width.
        vision_num_hidden_layers: vision tower depth.
        vision_num_attention_heads: vision heads.
        vision_intermediate_size: vision MLP width.
        initializer_range: std of the normal init of linear and embedding weights; large
            (0.2) so attention is far from uniform.
        min_pixels: Qwen only: smallest ``H * W`` the image processor resizes to.
        max_pixels: Qwen only: largest ``H * W`` (``448 * 448`` -> at most 256 tokens).
        image_size: side in pixels of the square the vision tower takes (not for Qwen);
            None = the family's default (:data:`IMAGE_SIZES`). LLaVA-1.5 / PaliGemma:
            the whole image; Gemma 3: the whole image, pooled 2x2; LLaVA-NeXT /
            LLaVA-OneVision / InternVL / Idefics3 / SmolVLM: one tile.
    """

    hidden_size: int = 64
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 4096
    vision_hidden_size: int = 32
    vision_num_hidden_layers: int = 2
    vision_num_attention_heads: int = 2
    vision_intermediate_size: int = 64
    initializer_range: float = 0.2
    min_pixels: int = 56 * 56
    max_pixels: int = 448 * 448
    image_size: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self, family: str) -> None:
        """Raise ValueError on sizes the architecture cannot take."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"tiny {family}: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"tiny {family}: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}."
            )
        if self.head_dim % 2 or self.head_dim < 8:
            raise ValueError(f"tiny {family}: head_dim={self.head_dim} must be even and >= 8 (RoPE).")
        if self.vision_hidden_size % self.vision_num_attention_heads:
            raise ValueError(
                f"tiny {family}: vision_hidden_size={self.vision_hidden_size} is not divisible by "
                f"vision_num_attention_heads={self.vision_num_attention_heads}."
            )
        if (self.vision_hidden_size // self.vision_num_attention_heads) % 4:
            raise ValueError(f"tiny {family}: the vision head dim must be a multiple of 4 (2-D rotary).")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"tiny {family}: need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}."
            )
        if self.image_size is not None:
            multiple = _IMAGE_SIZE_MULTIPLE.get(family, 14)
            if self.image_size % multiple or self.image_size <= 0:
                raise ValueError(
                    f"tiny {family}: image_size={self.image_size} must be a positive multiple of {multiple}."
                )


#: Spec fields that only mean something for some families (overriding them elsewhere is an error).
_QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

#: Default ``image_size`` of the families that have one (see :class:`TinySpec`).
IMAGE_SIZES: dict[str, int] = {
    "llava": 84,
    "gemma3": 168,
    "llava_next": 56,
    "llava_onevision": 56,
    "idefics3": 112,
    "smolvlm": 192,
    "internvl": 112,
    "paligemma": 84,
}
#: ``image_size`` must be a multiple of this (patch x pooling / pixel-shuffle factor); 14 when absent.
_IMAGE_SIZE_MULTIPLE: dict[str, int] = {
    "gemma3": 28,
    "idefics3": 28,
    "smolvlm": 64,
    "internvl": 28,
    "llava_onevision": 2,  # SigLIP takes any side (OneVision's 384 px = 27 patches of 14 px + 6 px)
}

_FAMILY_ONLY_FIELDS: dict[str, tuple[str, ...]] = {
    "min_pixels": _QWEN_FAMILIES,
    "max_pixels": _QWEN_FAMILIES,
    "image_size": tuple(IMAGE_SIZES),
}


def _spec(family: str, overrides: Mapping[str, Any]) -> TinySpec:
    """The validated :class:`TinySpec` of ``family`` with ``overrides`` applied."""
    _builder(family)
    known = {f.name for f in dataclasses.fields(TinySpec)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"tiny {family}: unknown override(s) {unknown}; known: {sorted(known)}.")
    for name in overrides:
        if name in _FAMILY_ONLY_FIELDS and family not in _FAMILY_ONLY_FIELDS[name]:
            raise ValueError(
                f"tiny {family}: override {name!r} applies only to {', '.join(_FAMILY_ONLY_FIELDS[name])}."
            )
    defaults = {"image_size": IMAGE_SIZES[family]} if family in IMAGE_SIZES else {}
    spec = dataclasses.replace(TinySpec(), **{**defaults, **overrides})
    spec.validate(family)
    return spec


def _mrope_section(head_dim: int) -> list[int]:
    """M-RoPE split of the ``head_dim / 2`` rotary frequencies into (t, h, w).

    Matches Qwen's ``[16, 24, 24]`` for ``head_dim = 128``; ``[2, 3, 3]`` for 16.
    """
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


# ---------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyBuilder:
    """How to make one family's parts.

    Attributes:
        tokenizer: ``spec -> tokenizer``.
        config: ``(spec, tokenizer) -> model config`` (vocab and special ids from the tokenizer).
        processor: ``(spec, tokenizer) -> processor`` carrying the chat template.
        generation: ``tokenizer -> GenerationConfig kwargs`` (greedy).
        model_class: name of the transformers model class, for logs and checks.
    """

    tokenizer: Callable[[TinySpec], PreTrainedTokenizerFast]
    config: Callable[[TinySpec, Any], PreTrainedConfig]
    processor: Callable[[TinySpec, Any], ProcessorMixin]
    generation: Callable[[Any], dict[str, Any]]
    model_class: str


# -- Qwen2-VL / Qwen2.5-VL -----------------------------------------------------------------

_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: The Qwen2-VL / Qwen2.5-VL instruct chat template (default system prompt when none is given).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return _make_tokenizer(
        unk="<unk>",  # real Qwen has none (byte-level BPE); ours maps unknown symbols to id 0
        leading=("<unk>",),
        trailing=_QWEN_SPECIALS,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        model_max_length=spec.max_position_embeddings,
    )


def _qwen_special_ids(tokenizer: Any) -> dict[str, int]:
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in (
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        )
    }
    return ids


def _qwen_text_config(spec: TinySpec, tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "initializer_range": spec.initializer_range,
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "max_window_layers": spec.num_hidden_layers,
        # M-RoPE: the rotary frequencies split into (temporal, height, width) sections.
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": _mrope_section(spec.head_dim),
        },
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }


def _qwen2_vl_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Qwen2VLConfig

    if spec.vision_intermediate_size % spec.vision_hidden_size:
        raise ValueError(
            f"tiny qwen2_vl: vision_intermediate_size={spec.vision_intermediate_size} must be a multiple of "
            f"vision_hidden_size={spec.vision_hidden_size} (Qwen2-VL's vision MLP width is an integer mlp_ratio)."
        )
    vision = {
        "depth": spec.vision_num_hidden_layers,
        "embed_dim": spec.vision_hidden_size,
        "hidden_size": spec.hidden_size,  # the merger projects into the text width
        "mlp_ratio": spec.vision_intermediate_size // spec.vision_hidden_size,
        "num_heads": spec.vision_num_attention_heads,
        "hidden_act": "quick_gelu",
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "initializer_range": spec.initializer_range,
    }
    return Qwen2VLConfig(
        text_config=_qwen_text_config(spec, tokenizer),
        vision_config=vision,
        tie_word_embeddings=False,
        **_qwen_special_ids(tokenizer),
    )


def _qwen2_5_vl_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Qwen2_5_VLConfig

    depth = spec.vision_num_hidden_layers
    vision = {
        "depth": depth,
        "hidden_size": spec.vision_hidden_size,
        "out_hidden_size": spec.hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_attention_heads,
        "hidden_act": "silu",
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        # Windows of 112 px = 4x4 merged tokens (as in the real model); the last block of
        # the tower attends globally, the others within windows (real: every 8th block).
        "window_size": 112,
        "fullatt_block_indexes": [depth - 1],
        "initializer_range": spec.initializer_range,
    }
    return Qwen2_5_VLConfig(
        text_config=_qwen_text_config(spec, tokenizer),
        vision_config=vision,
        tie_word_embeddings=False,
        **_qwen_special_ids(tokenizer),
    )


def _qwen_processor(processor_class: str) -> Callable[[TinySpec, Any], ProcessorMixin]:
    def make(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
        import transformers
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        geometry = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
        size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
        image_processor = Qwen2VLImageProcessor(size=size, **geometry)
        video_processor = Qwen2VLVideoProcessor(size=dict(size), cap_pixels_per_frame=True, **geometry)
        cls = getattr(transformers, processor_class)
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=QWEN_CHAT_TEMPLATE,
        )

    return make


def _qwen_generation(tokenizer: Any) -> dict[str, Any]:
    return {
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": [
            tokenizer.convert_tokens_to_ids("<|im_end|>"),
            tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        ],
        "pad_token_id": tokenizer.pad_token_id,
    }


# -- LLaVA-1.5 ------------------------------------------------------------------------------

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

_LLAVA_PATCH = 14


def _llava_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return _make_tokenizer(
        unk="<unk>",
        leading=("<unk>", "<s>", "</s>"),
        trailing=("<image>", "<pad>"),
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "<image>"},
    )


def _llava_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import LlavaConfig

    vision = _clip_vision(spec)
    text = {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "initializer_range": spec.initializer_range,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        "dtype": "float32",
    }
    side = spec.image_size // _LLAVA_PATCH
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=side * side,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )


def _llava_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        do_resize=True,
        do_center_crop=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=_LLAVA_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, dropped again by the "default" strategy
        chat_template=LLAVA_CHAT_TEMPLATE,
    )


def _llava_generation(tokenizer: Any) -> dict[str, Any]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _clip_vision(spec: TinySpec, **extra: Any) -> dict[str, Any]:
    """A CLIP vision tower config taking ``spec.image_size`` squares of 14-px patches."""
    return {
        "model_type": "clip_vision_model",
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "image_size": spec.image_size,
        "patch_size": _LLAVA_PATCH,
        "projection_dim": spec.vision_hidden_size,
        "hidden_act": "quick_gelu",
        "initializer_range": spec.initializer_range,
        **extra,
    }


def _siglip_vision(spec: TinySpec, patch_size: int = 14, **extra: Any) -> dict[str, Any]:
    """A SigLIP vision tower config (no attention-pooling head) on ``spec.image_size`` squares."""
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_hidden_layers": spec.vision_num_hidden_layers,
        "num_attention_heads": spec.vision_num_attention_heads,
        "image_size": spec.image_size,
        "patch_size": patch_size,
        "hidden_act": "gelu_pytorch_tanh",
        "vision_use_head": False,
        "initializer_range": spec.initializer_range,
        **extra,
    }


def _text_sizes(spec: TinySpec, tokenizer: Any) -> dict[str, Any]:
    """Sizes and special ids shared by every text decoder config."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim,
        "max_position_embeddings": spec.max_position_embeddings,
        "initializer_range": spec.initializer_range,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }


def _greedy_ids(tokenizer: Any, *eos: str) -> dict[str, Any]:
    """Generation-config ids: the tokenizer's bos/pad, and ``eos`` tokens (default: its eos)."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in eos] or [tokenizer.eos_token_id]
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": ids if len(ids) > 1 else ids[0],
        "pad_token_id": tokenizer.pad_token_id,
    }


# -- Gemma 3 ---------------------------------------------------------------------------------

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
    "{%- set first_user_prefix = \"\" -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}"
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
    "{%- else -%}{{ raise_exception(\"Invalid content type\") }}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"
)

#: Gemma 3's text decoder alternates sliding-window and global layers; the tiny one uses a
#: window shorter than its prompts, so the window really cuts the image off in local layers.
_GEMMA3_SLIDING_WINDOW = 64
_GEMMA3_LAYER_PATTERN = ("sliding_attention", "sliding_attention", "full_attention")


def _gemma_tokenizer(spec: TinySpec, trailing: tuple[str, ...], **named: str) -> PreTrainedTokenizerFast:
    """Gemma's ``<pad> <eos> <bos> <unk>`` = ids 0-3, BOS prepended, plus ``trailing`` specials."""
    return _make_tokenizer(
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
        **_text_sizes(spec, tokenizer),
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
        vision_config=_siglip_vision(spec),
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
    return _greedy_ids(tokenizer, "<eos>", "<end_of_turn>")


# -- LLaVA-NeXT ------------------------------------------------------------------------------

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


#: llava-v1.6's pinpoints as multiples of the tile side: 1x2, 2x1, 2x2, 3x1, 1x3 tiles.
_LLAVA_NEXT_GRIDS = ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))


def _llava_next_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import LlavaNextConfig

    side = spec.image_size // _LLAVA_PATCH
    text = {
        **_text_sizes(spec, tokenizer),
        "model_type": "mistral",
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "sliding_window": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "tie_word_embeddings": False,
    }
    return LlavaNextConfig(
        vision_config=_clip_vision(spec),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=[[r * spec.image_size, c * spec.image_size] for r, c in _LLAVA_NEXT_GRIDS],
        image_seq_length=side * side,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )


def _llava_next_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        image_grid_pinpoints=[[r * spec.image_size, c * spec.image_size] for r, c in _LLAVA_NEXT_GRIDS],
        do_pad=True,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=_LLAVA_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, dropped again by the "default" strategy
        chat_template=LLAVA_NEXT_CHAT_TEMPLATE,
    )


# -- Qwen3-VL --------------------------------------------------------------------------------

#: Qwen/Qwen3-VL-*-Instruct chat template (no default system prompt, unlike Qwen2.5-VL).
QWEN3_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_QWEN3_PATCH = 16


def _qwen3_vl_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Qwen3VLConfig

    half = spec.head_dim // 2
    text = {
        **_qwen_text_config(spec, tokenizer),
        "head_dim": spec.head_dim,
        # interleaved M-RoPE; real: [24, 20, 20] of 64 frequencies
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [half - 2 * (half // 4), half // 4, half // 4],
            "mrope_interleaved": True,
        },
    }
    for key in ("use_sliding_window", "max_window_layers"):
        text.pop(key)
    side = 8  # learned position embeddings for an 8 x 8 patch grid, interpolated to any grid (real: 48 x 48)
    vision = {
        "depth": spec.vision_num_hidden_layers,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_attention_heads,
        "out_hidden_size": spec.hidden_size,
        "hidden_act": "gelu_pytorch_tanh",
        "patch_size": _QWEN3_PATCH,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": side * side,
        "deepstack_visual_indexes": [0],  # features of vision block 0 are added after decoder layer 0
        "initializer_range": spec.initializer_range,
    }
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=False, **_qwen_special_ids(tokenizer)
    )


def _qwen3_vl_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    geometry = {"patch_size": _QWEN3_PATCH, "temporal_patch_size": 2, "merge_size": 2}
    size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    half = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **geometry, **half),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size=dict(size), **geometry, **half),
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )


# -- LLaVA-OneVision -------------------------------------------------------------------------

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


def _onevision_pinpoints(side: int) -> list[list[int]]:
    """llava-onevision's pinpoints: every grid of 1..6 x 1..6 tiles of ``side`` px (rows first)."""
    return [[r * side, c * side] for r in range(1, 7) for c in range(1, 7)]


def _llava_onevision_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return _make_tokenizer(
        unk="<unk>",
        leading=("<unk>",),
        trailing=(*_QWEN_SPECIALS, "<image>", "<video>"),
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )


def _llava_onevision_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import LlavaOnevisionConfig

    text = {
        **_text_sizes(spec, tokenizer),
        "model_type": "qwen2",
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "tie_word_embeddings": False,
    }
    return LlavaOnevisionConfig(
        vision_config=_siglip_vision(spec),
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


# -- Idefics3 / SmolVLM ----------------------------------------------------------------------

#: HuggingFaceM4/Idefics3-8B-Llama3 chat template:
#: ``<|begin_of_text|>User:<image>{text}<end_of_utterance>\nAssistant:``.
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}"
    "{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
#: HuggingFaceTB/SmolVLM-* chat template (transformers' SmolVLM default).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}"
    "{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
_SPLIT_IMAGE_SPECIALS = (
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)
#: Patch size and pixel-shuffle factor of the tiny vision towers (real Idefics3: 14 / 2, SmolVLM: 16 / 4).
_SPLIT_IMAGE_VISION = {"idefics3": (14, 2), "smolvlm": (16, 4)}
#: Tiles per side of the longest image side (real: 4).
_SPLIT_IMAGE_TILES = 2


def _idefics3_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return _make_tokenizer(
        unk="<unk>",
        leading=("<unk>",),
        trailing=("<|begin_of_text|>", "<|end_of_text|>", "<pad>", *_SPLIT_IMAGE_SPECIALS),
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
    )


def _smolvlm_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return _make_tokenizer(
        unk="<|endoftext|>",  # SmolLM2 maps unknown text to <|endoftext|>
        leading=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        trailing=(*_SPLIT_IMAGE_SPECIALS, "<video>"),
        bos=None,
        eos="<end_of_utterance>",
        pad="<|im_end|>",
        model_max_length=spec.max_position_embeddings,
    )


def _split_image_seq_len(family: str, spec: TinySpec) -> int:
    patch, scale = _SPLIT_IMAGE_VISION[family]
    return (spec.image_size // patch // scale) ** 2


def _split_image_config(family: str) -> Callable[[TinySpec, Any], PreTrainedConfig]:
    def make(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
        import transformers

        patch, scale = _SPLIT_IMAGE_VISION[family]
        text = {
            **_text_sizes(spec, tokenizer),
            "model_type": "llama",
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": 100_000.0},
            "tie_word_embeddings": False,
        }
        vision = {
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_hidden_layers": spec.vision_num_hidden_layers,
            "num_attention_heads": spec.vision_num_attention_heads,
            "image_size": spec.image_size,
            "patch_size": patch,
            "hidden_act": "gelu_pytorch_tanh",
            "initializer_range": spec.initializer_range,
        }
        cls = transformers.Idefics3Config if family == "idefics3" else transformers.SmolVLMConfig
        return cls(
            text_config=text,
            vision_config=vision,
            scale_factor=scale,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )

    return make


def _split_image_processor(family: str) -> Callable[[TinySpec, Any], ProcessorMixin]:
    def make(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
        import transformers

        common = {
            "size": {"longest_edge": _SPLIT_IMAGE_TILES * spec.image_size},
            "max_image_size": {"longest_edge": spec.image_size},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
        kwargs = {"image_seq_len": _split_image_seq_len(family, spec)}
        if family == "idefics3":
            image_processor = transformers.Idefics3ImageProcessor(do_image_splitting=True, **common)
            return transformers.Idefics3Processor(
                image_processor=image_processor, tokenizer=tokenizer, chat_template=IDEFICS3_CHAT_TEMPLATE, **kwargs
            )
        image_processor = transformers.SmolVLMImageProcessor(do_image_splitting=True, **common)
        video_processor = transformers.SmolVLMVideoProcessor(
            size={"longest_edge": spec.image_size}, max_image_size={"longest_edge": spec.image_size}
        )
        return transformers.SmolVLMProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=SMOLVLM_CHAT_TEMPLATE,
            **kwargs,
        )

    return make


# -- InternVL (transformers-native, "-hf" checkpoints) ----------------------------------------

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
#: At most this many tiles per image (real: 12), plus a thumbnail when there is more than one.
_INTERNVL_MAX_TILES = 4


def _internvl_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return _make_tokenizer(
        unk="<unk>",
        leading=("<unk>",),
        trailing=(*_QWEN_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )


def _internvl_seq_length(spec: TinySpec) -> int:
    return (spec.image_size // 14 // 2) ** 2  # 14-px patches, pixel shuffle 0.5


def _internvl_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import InternVLConfig

    text = {  # InternVL3.5: a Qwen3 decoder (per-head q/k RMSNorm)
        **_text_sizes(spec, tokenizer),
        "model_type": "qwen3",
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "tie_word_embeddings": False,
    }
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


# -- PaliGemma -------------------------------------------------------------------------------


def _paligemma_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    from transformers.models.paligemma.processing_paligemma import EXTRA_TOKENS

    # The processor writes ``<image>*n <bos> {prompt}\n`` itself, so the tokenizer adds no BOS; the
    # 1024 <locXXXX> and 128 <segXXX> tokens it would add at load time are part of the vocabulary already.
    tokenizer = _make_tokenizer(
        unk="<unk>",
        leading=("<pad>", "<eos>", "<bos>", "<unk>"),
        trailing=("<image>",),
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "<image>"},
        add_bos=False,
    )
    tokenizer.add_tokens(EXTRA_TOKENS)
    return tokenizer


def _paligemma_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import PaliGemmaConfig

    text = {  # PaliGemma 1: a Gemma decoder (PaliGemma 2's Gemma 2 has no SDPA kernel: logit soft-capping)
        **_text_sizes(spec, tokenizer),
        "model_type": "gemma",
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        "tie_word_embeddings": True,
    }
    return PaliGemmaConfig(
        vision_config=_siglip_vision(spec, projection_dim=spec.hidden_size),
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        projection_dim=spec.hidden_size,
        hidden_size=spec.hidden_size,
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
    )


def _paligemma_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    image_processor = SiglipImageProcessor(
        size={"height": spec.image_size, "width": spec.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        image_seq_length=(spec.image_size // 14) ** 2,
    )
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)


_BUILDERS: dict[str, FamilyBuilder] = {
    "qwen2_vl": FamilyBuilder(
        tokenizer=_qwen_tokenizer,
        config=_qwen2_vl_config,
        processor=_qwen_processor("Qwen2VLProcessor"),
        generation=_qwen_generation,
        model_class="Qwen2VLForConditionalGeneration",
    ),
    "qwen2_5_vl": FamilyBuilder(
        tokenizer=_qwen_tokenizer,
        config=_qwen2_5_vl_config,
        processor=_qwen_processor("Qwen2_5_VLProcessor"),
        generation=_qwen_generation,
        model_class="Qwen2_5_VLForConditionalGeneration",
    ),
    "llava": FamilyBuilder(
        tokenizer=_llava_tokenizer,
        config=_llava_config,
        processor=_llava_processor,
        generation=_llava_generation,
        model_class="LlavaForConditionalGeneration",
    ),
    "gemma3": FamilyBuilder(
        tokenizer=_gemma3_tokenizer,
        config=_gemma3_config,
        processor=_gemma3_processor,
        generation=_gemma3_generation,
        model_class="Gemma3ForConditionalGeneration",
    ),
    "llava_next": FamilyBuilder(
        tokenizer=_llava_tokenizer,
        config=_llava_next_config,
        processor=_llava_next_processor,
        generation=_llava_generation,
        model_class="LlavaNextForConditionalGeneration",
    ),
    "qwen3_vl": FamilyBuilder(
        tokenizer=_qwen_tokenizer,
        config=_qwen3_vl_config,
        processor=_qwen3_vl_processor,
        generation=_qwen_generation,
        model_class="Qwen3VLForConditionalGeneration",
    ),
    "llava_onevision": FamilyBuilder(
        tokenizer=_llava_onevision_tokenizer,
        config=_llava_onevision_config,
        processor=_llava_onevision_processor,
        generation=_qwen_generation,
        model_class="LlavaOnevisionForConditionalGeneration",
    ),
    "idefics3": FamilyBuilder(
        tokenizer=_idefics3_tokenizer,
        config=_split_image_config("idefics3"),
        processor=_split_image_processor("idefics3"),
        generation=lambda tokenizer: _greedy_ids(tokenizer, "<end_of_utterance>", "<|end_of_text|>"),
        model_class="Idefics3ForConditionalGeneration",
    ),
    "smolvlm": FamilyBuilder(
        tokenizer=_smolvlm_tokenizer,
        config=_split_image_config("smolvlm"),
        processor=_split_image_processor("smolvlm"),
        generation=lambda tokenizer: _greedy_ids(tokenizer, "<end_of_utterance>"),
        model_class="SmolVLMForConditionalGeneration",
    ),
    "internvl": FamilyBuilder(
        tokenizer=_internvl_tokenizer,
        config=_internvl_config,
        processor=_internvl_processor,
        generation=_qwen_generation,
        model_class="InternVLForConditionalGeneration",
    ),
    "paligemma": FamilyBuilder(
        tokenizer=_paligemma_tokenizer,
        config=_paligemma_config,
        processor=_paligemma_processor,
        generation=_greedy_ids,
        model_class="PaliGemmaForConditionalGeneration",
    ),
}

#: Families a tiny checkpoint can be built for.
FAMILIES: tuple[str, ...] = tuple(_BUILDERS)


#: Python packages a family's transformers processor needs beyond this project's dependencies.
FAMILY_REQUIREMENTS: dict[str, tuple[str, ...]] = {"smolvlm": ("num2words",)}


def missing_requirements(family: str) -> tuple[str, ...]:
    """The packages of :data:`FAMILY_REQUIREMENTS` that ``family`` needs and that are not installed."""
    import importlib.util

    _builder(family)
    return tuple(name for name in FAMILY_REQUIREMENTS.get(family, ()) if importlib.util.find_spec(name) is None)


def available_families() -> tuple[str, ...]:
    """The :data:`FAMILIES` whose processor requirements are installed (all but, e.g., SmolVLM without num2words)."""
    return tuple(family for family in FAMILIES if not missing_requirements(family))


def _builder(family: str) -> FamilyBuilder:
    try:
        return _BUILDERS[family]
    except (KeyError, TypeError):
        raise ValueError(f"unknown tiny model family {family!r}; known families: {', '.join(FAMILIES)}.") from None


def _require(family: str) -> None:
    missing = missing_requirements(family)
    if missing:
        raise ImportError(
            f"tiny {family}: transformers' {family} processor needs {', '.join(missing)}; "
            f"install it with `pip install {' '.join(missing)}`."
        )


# ---------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------


def _init_weights(model: Any, std: float, seed: int) -> None:
    """Deterministic normal init, independent of transformers' own ``_init_weights``.

    Linear and embedding weights ~ N(0, std); convolution (patch embedding) weights
    ~ N(0, 1 / fan_in) so patch features have unit scale; biases ~ N(0, std / 10).
    Norm weights keep their defaults (ones / zeros), except per-head query/key norms,
    whose gain is doubled. Other free parameters (CLIP's class embedding, LLaVA-NeXT's
    image newline, Gemma 3's projection matrix) ~ N(0, std).
    """
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    done: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv2d, nn.Conv3d)):
                weight = module.weight
                if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                    scale = weight[0].numel() ** -0.5
                else:
                    scale = std
                weight.copy_(torch.randn(weight.shape, generator=generator, dtype=torch.float32) * scale)
                done.add(id(weight))
                bias = getattr(module, "bias", None)
                if bias is not None:
                    bias.copy_(torch.randn(bias.shape, generator=generator, dtype=torch.float32) * (std / 10))
                    done.add(id(bias))
            elif isinstance(module, (nn.LayerNorm,)) or type(module).__name__.endswith("RMSNorm"):
                done.update(id(p) for p in module.parameters(recurse=False))
        for name, param in model.named_parameters():
            if id(param) not in done:
                log.debug("tiny init: %s ~ N(0, %s)", name, std)
                param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32) * std)
        for name, module in model.named_modules():
            # Per-head q/k RMSNorm (Gemma 3, Qwen3) caps |q . k| at head_dim * scale: 4 at head_dim 16, so
            # attention would be nearly uniform. Doubling their gain (w -> w + 1 for both the ``w`` and the
            # ``1 + w`` parametrisation) lets logits span +-16, like the other families' attention.
            if name.rsplit(".", 1)[-1] in ("q_norm", "k_norm") and getattr(module, "weight", None) is not None:
                module.weight.add_(1.0)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def tiny_config(family: str, **overrides: Any) -> PreTrainedConfig:
    """The model config of a tiny ``family`` checkpoint (no weights).

    Benchmarks build larger in-memory models from it, e.g.
    ``Qwen2VLForConditionalGeneration(tiny_config("qwen2_vl", num_hidden_layers=24))``.

    Args:
        family: one of :data:`FAMILIES`.
        **overrides: :class:`TinySpec` fields (``num_hidden_layers=8``, ``hidden_size=128``,
            ``max_pixels=...`` for Qwen, ``image_size=336`` for LLaVA...).

    Returns:
        The transformers config (``Qwen2VLConfig``, ``Gemma3Config``, ``LlavaNextConfig``...);
        its vocabulary size and special-token ids match the tiny tokenizer.

    Raises:
        ValueError: unknown family, unknown override or inconsistent sizes.
    """
    builder = _builder(family)
    spec = _spec(family, overrides)
    return builder.config(spec, builder.tokenizer(spec))


def tiny_processor(family: str, **overrides: Any) -> ProcessorMixin:
    """The processor (tokenizer, image processor, chat template) of a tiny ``family`` checkpoint.

    Pairs with :func:`tiny_config` for in-memory models (benchmarks): the same overrides
    give a processor whose token layout matches that config.

    Raises:
        ValueError: unknown family, unknown override or inconsistent sizes.
        ImportError: the family's processor needs a package that is not installed.
    """
    builder = _builder(family)
    spec = _spec(family, overrides)
    _require(family)
    return builder.processor(spec, builder.tokenizer(spec))


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``VEA_TINY_MODEL.json`` of ``folder`` as a dict, or None when absent/unreadable."""
    path = Path(folder) / MARKER_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _strip_name_or_path(config_file: Path) -> None:
    """Remove ``_name_or_path`` entries (top level and sub-configs) from a saved config."""
    data = json.loads(config_file.read_text(encoding="utf-8"))

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "_name_or_path"}
        return node

    cleaned = strip(data)
    if cleaned != data:
        config_file.write_text(json.dumps(cleaned, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_parts(
    family: str, spec: TinySpec, seed: int, folder: Path, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Build every part of a tiny ``family`` checkpoint and save it into ``folder`` (exists, empty).

    Returns:
        The marker written to ``folder / MARKER_NAME``.
    """
    import torch
    import transformers
    from transformers import GenerationConfig

    builder = _BUILDERS[family]
    tokenizer = builder.tokenizer(spec)
    config = builder.config(spec, tokenizer)
    processor = builder.processor(spec, tokenizer)
    model_class = getattr(transformers, builder.model_class)

    with torch.random.fork_rng(devices=[]):  # seed without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        model = model_class(config).to(torch.float32).eval()
        _init_weights(model, spec.initializer_range, seed)
    model.generation_config = GenerationConfig(do_sample=False, num_beams=1, **builder.generation(tokenizer))

    processor.save_pretrained(folder)
    model.save_pretrained(folder, safe_serialization=True)
    for name in ("config.json", "generation_config.json"):
        if (folder / name).is_file():
            _strip_name_or_path(folder / name)
    marker = {"family": family, "builder_version": BUILDER_VERSION, "seed": seed, "overrides": dict(overrides)}
    (folder / MARKER_NAME).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return marker


def build_tiny_model(family: str, out_dir: str | os.PathLike, seed: int = 0, **overrides: Any) -> Path:
    """Build and save one tiny random-weight checkpoint of ``family``.

    The folder is assembled next to ``out_dir`` and moved into place at the end, so a
    crash never leaves a half-written checkpoint. An existing ``out_dir`` is replaced
    only when it is empty or was itself built here (has a ``VEA_TINY_MODEL.json``).

    Args:
        family: one of :data:`FAMILIES`.
        out_dir: the checkpoint folder to write.
        seed: seeds ``torch.manual_seed`` and the weight init; same seed -> same weights.
        **overrides: :class:`TinySpec` fields, e.g. ``num_hidden_layers=8``; for larger
            images ``max_pixels=...`` (Qwen) or ``image_size=336`` (LLaVA).

    Returns:
        The checkpoint folder (``out_dir`` as a ``Path``).

    Raises:
        ValueError: unknown family or override, or ``out_dir`` holds something else.
    """
    spec = _spec(family, overrides)
    _require(family)
    target = Path(out_dir).expanduser()
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"tiny {family}: {target} exists and is not a folder.")
        if any(target.iterdir()) and read_marker(target) is None:
            raise ValueError(
                f"tiny {family}: {target} is not empty and has no {MARKER_NAME}; refusing to overwrite it. "
                "Pick an empty or new folder."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        marker = _save_parts(family, spec, seed, staging, overrides)
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished the same build first; keep its identical result.
            if read_marker(target) != marker:
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("built tiny %s checkpoint (seed %d) in %s", family, seed, target)
    return target


def _up_to_date(folder: Path, family: str, seed: int) -> bool:
    marker = read_marker(folder)
    return (
        marker is not None
        and marker.get("family") == family
        and marker.get("builder_version") == BUILDER_VERSION
        and marker.get("seed") == seed
        and not marker.get("overrides")
        and (folder / "config.json").is_file()
        and (folder / "model.safetensors").is_file()
    )


def build_tiny_models(
    root: str | os.PathLike, families: Iterable[str] | None = None, seed: int = 0
) -> dict[str, Path]:
    """Build each family into ``root/<family>-tiny`` unless an up-to-date one is there.

    Up to date = its ``VEA_TINY_MODEL.json`` names the same family, :data:`BUILDER_VERSION`
    and ``seed``, with no overrides. Stale folders built here are rebuilt.

    Args:
        root: folder holding the checkpoints (created if missing).
        families: which families; default every family whose processor requirements are
            installed (:func:`available_families`; the others are skipped with a warning).
            A family named explicitly must be buildable (ImportError otherwise).
        seed: weight seed.

    Returns:
        ``family -> checkpoint folder``, in the order given.
    """
    if families is None:
        families = available_families()
        for family in sorted(set(FAMILIES) - set(families)):
            log.warning("tiny %s checkpoint skipped: %s not installed", family, ", ".join(missing_requirements(family)))
    elif isinstance(families, str):
        families = (families,)
    families = tuple(families)
    for family in families:
        _builder(family)
    for family in families:
        _require(family)
    root_path = Path(root).expanduser()
    paths: dict[str, Path] = {}
    for family in families:
        folder = root_path / f"{family}-tiny"
        if _up_to_date(folder, family, seed):
            log.debug("tiny %s checkpoint up to date in %s", family, folder)
        else:
            build_tiny_model(family, folder, seed=seed)
        paths[family] = folder
    return paths
