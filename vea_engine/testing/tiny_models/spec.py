"""What describes a tiny family: its sizes, how its parts are made, what its checkpoint must show.

* :class:`TinySpec` - the sizes of one tiny checkpoint (every field overridable by keyword),
  with :func:`resolve_spec` applying and validating a caller's overrides;
* :class:`FamilyBuilder` - the callables that make one family's tokenizer, config,
  processor and generation settings, plus its image-size rules and extra requirements;
* :class:`FamilyExpectations` - hand-written facts about the built checkpoint (chat text,
  image token, image-token counts) that ``tests/test_tiny_models.py`` checks.

Each family module of this package fills one :class:`FamilyBuilder` (carrying its
:class:`FamilyExpectations`); :mod:`.registry` lists them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["FamilyBuilder", "FamilyExpectations", "TinySpec", "resolve_spec"]

#: Image-size multiple of the families that do not set one (14-px patches).
DEFAULT_IMAGE_SIZE_MULTIPLE = 14


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

    def validate(self, family: str, image_size_multiple: int | None = None) -> None:
        """Raise ValueError on sizes the architecture cannot take.

        Args:
            family: the family name (for messages; and for its image-size multiple when
                ``image_size_multiple`` is None).
            image_size_multiple: ``image_size`` must be a multiple of this; None = the
                family's :attr:`FamilyBuilder.image_size_multiple` (14 for an unknown name).
        """
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
            multiple = image_size_multiple
            if multiple is None:
                from .registry import FAMILIES, family_builder  # lazy: the registry imports this module

                known = family in FAMILIES
                multiple = family_builder(family).image_size_multiple if known else DEFAULT_IMAGE_SIZE_MULTIPLE
            if self.image_size % multiple or self.image_size <= 0:
                raise ValueError(
                    f"tiny {family}: image_size={self.image_size} must be a positive multiple of {multiple}."
                )


@dataclass(frozen=True)
class FamilyExpectations:
    """Hand-written facts about a family's built checkpoint, checked by ``tests/test_tiny_models.py``.

    Written by hand from the real processors' rules (never computed by the builder), so a
    builder change that moves them fails the tests.

    Attributes:
        chat: the exact text the chat template renders for one user turn of one image and
            a question, with a generation prompt; ``{question}`` stands for the question.
            None: the family has no chat template (PaliGemma's processor writes the prompt).
        image_token: the placeholder token the processor expands per image feature.
        image_tokens: ``(W, H)`` of an input picture -> the number of ``image_token`` in
            the prompt for it.
        image_grids: Qwen-style families only: ``(W, H)`` -> ``image_grid_thw`` row.
        split_prompt: the image tokens are interleaved with other tokens (row/column tags),
            not one contiguous block.
    """

    chat: str | None
    image_token: str
    image_tokens: Mapping[tuple[int, int], int]
    image_grids: Mapping[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)
    split_prompt: bool = False

    def chat_for(self, question: str) -> str | None:
        """:attr:`chat` with ``question`` in place of ``{question}`` (None when no template)."""
        return None if self.chat is None else self.chat.replace("{question}", question)


@dataclass(frozen=True)
class FamilyBuilder:
    """How to make one family's parts.

    Attributes:
        tokenizer: ``spec -> tokenizer``.
        config: ``(spec, tokenizer) -> model config`` (vocab and special ids from the tokenizer).
        processor: ``(spec, tokenizer) -> processor`` carrying the chat template.
        generation: ``tokenizer -> GenerationConfig kwargs`` (greedy).
        model_class: name of the transformers model class, for logs and checks.
        expected: the facts its checkpoint must show (:class:`FamilyExpectations`).
        image_size: default :attr:`TinySpec.image_size` (side of the square the vision tower
            takes, in px). None: the family sizes images by a pixel budget instead
            (``min_pixels`` / ``max_pixels``, Qwen); ``image_size`` overrides are refused.
        image_size_multiple: ``image_size`` must be a multiple of this (patch x pooling /
            pixel-shuffle factor).
        requirements: Python packages its transformers processor needs beyond this
            project's dependencies (the family is skipped when they are missing).
    """

    tokenizer: Callable[[TinySpec], PreTrainedTokenizerFast]
    config: Callable[[TinySpec, Any], PreTrainedConfig]
    processor: Callable[[TinySpec, Any], ProcessorMixin]
    generation: Callable[[Any], dict[str, Any]]
    model_class: str
    expected: FamilyExpectations
    image_size: int | None = None
    image_size_multiple: int = DEFAULT_IMAGE_SIZE_MULTIPLE
    requirements: tuple[str, ...] = ()


def resolve_spec(
    family: str,
    builder: FamilyBuilder,
    overrides: Mapping[str, Any],
    family_only_fields: Mapping[str, tuple[str, ...]],
) -> TinySpec:
    """The validated :class:`TinySpec` of ``family`` with ``overrides`` applied.

    Args:
        family: the family name (for messages).
        builder: its :class:`FamilyBuilder` (default ``image_size`` and its multiple).
        overrides: :class:`TinySpec` field -> value.
        family_only_fields: spec field -> the families it applies to; overriding it for
            another family is an error.

    Raises:
        ValueError: an unknown field, a field that does not apply to ``family``, or sizes
            the architecture cannot take.
    """
    known = {f.name for f in dataclasses.fields(TinySpec)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"tiny {family}: unknown override(s) {unknown}; known: {sorted(known)}.")
    for name in overrides:
        if name in family_only_fields and family not in family_only_fields[name]:
            raise ValueError(f"tiny {family}: override {name!r} applies only to {', '.join(family_only_fields[name])}.")
    defaults = {"image_size": builder.image_size} if builder.image_size is not None else {}
    spec = dataclasses.replace(TinySpec(), **{**defaults, **overrides})
    spec.validate(family, builder.image_size_multiple)
    return spec
